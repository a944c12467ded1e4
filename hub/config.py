"""The hub's settings: one `HubSettings`, read from `HCP_HUB_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 8700
DEFAULT_MAX_ITEMS = 1000  # the contract's batch limit (docs/protocol.md, "Hub ingest")
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # 1000 items of ~1 KiB each, with room to spare
POSTGRES_SCHEMES = ("postgresql", "postgres")  # libpq's URL schemes


class HubSettings(BaseSettings):
    """Everything the hub needs to start. Unknown `HCP_HUB_*` variables are ignored.

    `admin_token` has no usable default: while it is empty the hub still runs (gateways can
    ingest) but every admin endpoint answers 503 "admin token not configured".
    The database: PostgreSQL when `db_url` is set (a `postgresql://` URL; secret, as it may hold a
    password), else the SQLite file `db_path`.
    """

    # hide_input_in_errors: a mistyped db_url may hold a password; errors name the field, not the value
    model_config = SettingsConfigDict(env_prefix="HCP_HUB_", extra="ignore", hide_input_in_errors=True)

    db_path: Path = Path("var/hub.sqlite3")
    db_url: SecretStr = Field(default=SecretStr(""),
                              description="postgresql://user@host:port/db selects PostgreSQL; empty: SQLite")
    admin_token: SecretStr = SecretStr("")
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    public_url: str = Field(default="", description="base URL phones reach; default http://host:port")
    max_items: int = Field(default=DEFAULT_MAX_ITEMS, ge=1)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    holiday_dir: Path | None = Field(default=None, description="operator's holiday files, YYYY.json "
                                     "(docs/hub.md, 'Working days'); they win over the shipped ones")
    defaults_interval_s: float = Field(default=3600.0, ge=0,
                                       description="run the default-rating job this often; 0: never")
    defaults_lookback_days: int = Field(default=90, ge=1, le=3660,
                                        description="services stored longer ago are not looked at again")
    phone_key_file: Path | None = Field(default=None, description="keys that seal raters' names and phone "
                                        "numbers (docs/phone.md, 'Keys'); none: the phone page asks for neither")
    public_staff_results: bool = Field(default=True, description="the public results page lists each staff id's "
                                       "evaluation rate and satisfaction (seed 001 posts them monthly); "
                                       "false: halls and units only (docs/dashboard.md)")
    case_reminders_interval_s: float = Field(default=300.0, ge=0,
                                             description="write bad-review case reminders this often; 0: never")

    # accounts (docs/accounts.md)
    session_idle_s: float = Field(default=1800.0, ge=1, description="a session unused this long ends")
    session_max_s: float = Field(default=12 * 3600.0, ge=1, description="a session ends this long after "
                                 "its sign-in, however used")
    cookie_secure: bool | None = Field(default=None, description="the session cookie's Secure flag; "
                                       "default: on when public_url is https://")
    login_max_failures: int = Field(default=5, ge=1, description="failed sign-ins per login name "
                                    "within login_window_s before it is refused until the window ends")
    login_max_failures_address: int = Field(default=30, ge=1, description="the same per client address")
    login_window_s: float = Field(default=900.0, ge=1, description="the throttle's window")

    @field_validator("db_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if url and urlsplit(url).scheme not in POSTGRES_SCHEMES:
            raise ValueError("db_url must be a postgresql:// URL (leave it empty for SQLite at db_path)")
        return value

    @model_validator(mode="after")
    def _derive_public_url(self) -> HubSettings:
        if not self.public_url:
            self.public_url = self.derived_url()
        self.public_url = self.public_url.rstrip("/")
        return self

    def derived_url(self, port: int | None = None) -> str:
        """`http://host:port`, with IPv6 hosts in brackets."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}"

    @property
    def postgres_url(self) -> str | None:
        """The PostgreSQL URL, or None when the hub uses SQLite."""
        return self.db_url.get_secret_value() or None

    @property
    def database_label(self) -> str:
        """The database for messages: the SQLite path, or the URL with any password masked."""
        url = self.postgres_url
        if url is None:
            return str(self.db_path)
        parts = urlsplit(url)
        netloc, query = parts.netloc, parts.query
        if parts.password is not None:
            netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
        fields = parse_qsl(query, keep_blank_values=True)
        if any(name == "password" for name, _ in fields):
            query = urlencode([(name, "***" if name == "password" else value) for name, value in fields],
                              safe="*")
        return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")

    @property
    def secure_cookies(self) -> bool:
        """Whether cookies carry Secure: `cookie_secure` if set, else whether public_url is https."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.public_url.lower().startswith("https://")

    @property
    def admin_configured(self) -> bool:
        return bool(self.admin_token.get_secret_value())
