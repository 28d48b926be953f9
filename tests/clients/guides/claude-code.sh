export ANTHROPIC_BASE_URL=http://127.0.0.1:8080
export ANTHROPIC_API_KEY=unused  # any value on loopback; else a key from `claude-code-api keys create`
claude -p "Say hello" --output-format json
