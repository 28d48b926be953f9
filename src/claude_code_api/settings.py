"""Configuration: one pydantic-settings class, from the environment and a TOML file.

Environment names are ``CLAUDE_CODE__SECTION__KEY`` (``CLAUDE_CODE__SERVER__PORT``);
the TOML file has one table per section (``[server]``, ``[claude]``, ``[models]``).
Precedence, highest first: constructor arguments (the CLI's ``--host``/``--port``),
the environment, the TOML file, the defaults below.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("config/local.toml")


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


# Validated one by one, so that an error names the bad entry, not the whole list.
Secret = Annotated[SecretStr, BeforeValidator(_strip), Field(min_length=1)]


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field("text", description="log lines as text or "
                                                "as one JSON object each")
    cors_origins: list[str] = Field(default_factory=list, description="browser origins "
                                    "allowed to call the API (\"*\" for any); none by default")
    cors_allow_credentials: bool = Field(False, description="let browsers send cookies and "
                                         "auth headers cross-origin")
    metrics_public: bool = Field(False, description="serve /metrics without a key even when "
                                 "auth is required (for a scraper on a private network)")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="largest request "
                                "body accepted (413 beyond); uploads to /v1/files have "
                                "batch.max_file_bytes instead")
    replica_id: str | None = Field(None, min_length=1, max_length=200, description="this "
                                   "process's name among replicas sharing a store (the warm "
                                   "conversation registry); default hostname:port")

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


class ClaudeSettings(BaseModel):
    cli_path: str | None = Field(None, description="claude binary; default: the one bundled "
                                                   "with claude-agent-sdk")
    default_model: str = Field("sonnet", description="model when a request names none we map")
    max_concurrent_sessions: int = Field(4, ge=1, description="live CLI processes at most")
    min_idle_workers: int = Field(1, ge=0, description="warm workers kept ready for new "
                                                      "conversations")
    idle_seconds: float = Field(300.0, gt=0, description="close a worker idle this long")
    hold_seconds: float = Field(120.0, gt=0, description="an idle worker keeps its "
                                                        "conversation loaded this long, for "
                                                        "a warm continuation")
    max_live_conversations: int | None = Field(None, ge=0, description="conversations kept "
                                               "loaded at most (least recently used are "
                                               "reset first); default: one per worker")
    max_queue: int = Field(32, ge=0, description="requests that may wait for a worker")
    queue_timeout_seconds: float = Field(30.0, gt=0, description="longest wait for a worker")
    timeout_seconds: float = Field(300.0, gt=0, description="longest silence from the CLI "
                                                           "during a turn before it is "
                                                           "interrupted")
    max_retries: int = Field(0, ge=0, description="CLAUDE_CODE_MAX_RETRIES given to the CLI; "
                                                 "clients retry on their own")
    retry_after_seconds: int = Field(5, ge=1, description="Retry-After sent with 429/503")
    work_root: Path | None = Field(None, description="parent of the CLI's private working "
                                                    "and config directories; default a "
                                                    "temporary directory")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment for "
                                                                  "the CLI")
    credentials: list[Secret] = Field(default_factory=list, description="Anthropic API "
                                         "keys or `claude setup-token` OAuth tokens, used in "
                                         "order and rotated when one is rate-limited or "
                                         "rejected; default: the CLI's own login or "
                                         "ANTHROPIC_API_KEY")
    credential_cooldown_seconds: float = Field(60.0, gt=0, description="how long a "
                                               "rate-limited credential rests")
    credential_rejected_cooldown_seconds: float = Field(600.0, gt=0, description="how long "
                                                        "a rejected (401/403) credential "
                                                        "rests")


class MediaSettings(BaseModel):
    max_image_bytes: int = Field(10 * 1024 * 1024, gt=0, description="largest image accepted")
    fetch_timeout_seconds: float = Field(10.0, gt=0, description="longest fetch of an image "
                                                                "URL")
    max_redirects: int = Field(3, ge=0, description="redirects followed when fetching")
    allowed_hosts: list[str] = Field(default_factory=list, description="hosts fetched even "
                                     "though they resolve to private addresses")
    allowed_local_dirs: list[Path] = Field(default_factory=list, description="directories "
                                           "whose files may be sent as file:// images")


class ChatSettings(BaseModel):
    reasoning_content: bool = Field(True, description="send Claude's thinking as "
                                                      "reasoning_content (message and deltas)")


def _default_store() -> Path:
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "claude-code-api" / "gateway.db"


def _store_url(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip() or None
    if value is not None and not str(value).startswith(
            ("sqlite://", "postgresql://", "postgres://")):
        raise ValueError("store.url is sqlite:///path or postgresql://user@host/database")
    return value


class StoreSettings(BaseModel):
    path: Path = Field(default_factory=_default_store, description="SQLite file for keys, "
                       "conversations, responses and batches when store.url is not set "
                       "(\":memory:\" keeps nothing across restarts)")
    url: Annotated[str | None, BeforeValidator(_store_url)] = Field(
        None, description="where the durable state is: sqlite:///path (one process) or "
        "postgresql://user@host/database (shared by replicas); unset: store.path")
    pool_size: int = Field(8, ge=1, description="PostgreSQL connections per process at most")

    def target(self) -> str:
        """The store's URL, or the SQLite file's path."""
        return self.url or str(self.path)


class AuthSettings(BaseModel):
    required: bool = Field(False, description="require a client API key on loopback too "
                           "(beyond loopback a key is always required)")
    rpm_window_seconds: float = Field(60.0, gt=0, description="the window a key's "
                                      "requests-per-minute limit counts over (shorter only "
                                      "for tests)")
    turn_reserve_usd: float = Field(0.10, ge=0, description="what a turn reserves of its "
                                    "key's budget while it runs, until turns of its model "
                                    "have been charged (then their recent mean cost)")


class CacheSettings(BaseModel):
    enabled: bool = Field(False, description="answer exact repeats of a request from memory")
    ttl_seconds: float = Field(3600.0, gt=0, description="how long an entry is served")
    max_entries: int = Field(1000, ge=1, description="entries kept (least recently used go "
                                                     "first; in Redis the oldest)")
    max_entry_bytes: int = Field(1024 * 1024, ge=1, description="larger responses are not "
                                                                "cached")
    shared_across_keys: bool = Field(False, description="let one key's cached answers serve "
                                     "another key's identical requests")


class RedisSettings(BaseModel):
    url: str | None = Field(None, description="redis://host:port/db: keep rate limits, "
                            "budget reservations and the response cache in Redis, shared by "
                            "every replica (default: in this process)")
    prefix: str = Field("cca:", description="the start of every Redis key the gateway uses")
    lease_seconds: float = Field(30.0, gt=0, description="a running request's slot and "
                                 "budget reservation end this long after a replica that died "
                                 "last renewed them")
    timeout_seconds: float = Field(2.0, gt=0, description="longest wait for Redis before a "
                                   "request is answered 503")


# Claude Code's file tools and its task list (TaskCreate..TaskUpdate took TodoWrite's
# place), as the bundled CLI offers them; no Bash, no web. Older CLIs' MultiEdit, LS
# and TodoWrite are gone: a test checks that the CLI offers every one listed here.
AGENT_TOOLS = ["Read", "Write", "Edit", "NotebookEdit", "Glob", "Grep",
               "TaskCreate", "TaskGet", "TaskList", "TaskUpdate"]


def _default_workspaces() -> Path:
    return _default_store().parent / "workspaces"


class AgentSettings(BaseModel):
    enabled: bool = Field(False, description="allow agent mode (Claude Code's own tools in a "
                          "workspace) for keys created with --agent, and for the local user")
    allow_local: bool = Field(True, description="on loopback, requests without a key may use "
                              "agent mode")
    workspace_root: Path = Field(default_factory=_default_workspaces, description="each agent "
                                 "conversation gets a directory under it")
    project_dir: Path | None = Field(None, description="one fixed directory every agent "
                                     "conversation works in, instead of its own")
    tools: list[str] = Field(default_factory=lambda: list(AGENT_TOOLS), description="Claude "
                             "Code tools agent mode offers (Bash and web tools are off unless "
                             "listed)")
    disallowed_tools: list[str] = Field(default_factory=list, description="tools never "
                                        "allowed, also MCP tools (mcp__server__tool)")
    permission_mode: Literal["default", "acceptEdits", "plan", "bypassPermissions"] = Field(
        "default", description="the CLI's permission mode; bypassPermissions skips every "
        "check, including the workspace confinement")
    max_turns: int = Field(30, ge=1, description="model calls per agent turn at most")
    max_budget_usd: float | None = Field(None, gt=0, description="cost of one agent turn at "
                                         "most (US dollars, as Claude Code reports it)")


class FileAccessSettings(BaseModel):
    additional_dirs: list[Path] = Field(default_factory=list, description="directories agent "
                                        "mode may use besides the conversation's workspace")


class McpSettings(BaseModel):
    enabled: bool = Field(False, description="give agent mode the MCP servers of config_file")
    config_file: Path | None = Field(None, description="a standard mcp_config.json "
                                     "({\"mcpServers\": {...}})")


class SessionSettings(BaseModel):
    max_live: int = Field(2, ge=0, description="live WebSocket sessions at once (each holds "
                          "a worker of the pool)")
    idle_seconds: float = Field(600.0, gt=0, description="close a session without a turn "
                                "for this long")
class BatchSettings(BaseModel):
    max_requests: int = Field(1000, ge=1, description="requests in one POST /v1/batch at most")
    max_file_requests: int = Field(50_000, ge=1, description="requests in one batch input "
                                   "file (POST /v1/batches) at most")
    max_file_bytes: int = Field(100 * 1024 * 1024, ge=1, description="largest file accepted "
                                "by POST /v1/files")
    lease_seconds: float = Field(60.0, gt=0, description="how long a process holds a batch "
                                 "item it runs without renewing it: the items of a replica "
                                 "that died are taken over this long after")


class ModelSettings(BaseModel):
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description="client model name -> Claude model (e.g. gpt-4o = 'sonnet')",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLAUDE_CODE__",
        env_nested_delimiter="__",
        extra="ignore",
        toml_file=DEFAULT_CONFIG_FILE,
    )

    server: ServerSettings = Field(default_factory=ServerSettings)
    claude: ClaudeSettings = Field(default_factory=ClaudeSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    file_access: FileAccessSettings = Field(default_factory=FileAccessSettings)
    mcp: McpSettings = Field(default_factory=McpSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)

    def auth_required(self) -> bool:
        """Always beyond loopback; on loopback when configured."""
        return not self.server.is_loopback() or bool(self.auth.required)

    def cli_line_bytes(self) -> int:
        """The longest JSON line read from a CLI. The CLI writes a conversation's text
        back in single lines (a rewind's answer holds the first message's text, a tool
        result comes back whole), so a line must hold the largest body, twice over
        for the CLI's own escaping and wrapping, and a fetched image as base64."""
        return 2 * (self.server.max_body_bytes + self.media.max_image_bytes)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, the TOML file and explicit overrides.

    ``config_file`` replaces the default ``config/local.toml``; a named file must exist.
    """
    if config_file is None:
        return Settings(**overrides)
    if not config_file.is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    return Settings.model_validate(_FromFile(**overrides).model_dump())
