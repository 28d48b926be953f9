export CLAUDE_CODE_API_KEY=unused  # any value on loopback; else a key from `claude-code-api keys create`
codex exec "Say hello"
