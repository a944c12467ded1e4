"""The hub's settings: one `HubSettings`, read from `HCP_HUB_*` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 8700
DEFAULT_MAX_ITEMS = 1000  # the contract's batch limit (docs/protocol.md, "Hub ingest")
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024  # 1000 items of ~1 KiB each, with room to spare


class HubSettings(BaseSettings):
    """Everything the hub needs to start. Unknown `HCP_HUB_*` variables are ignored.

    `admin_token` has no usable default: while it is empty the hub still runs (gateways can
    ingest) but every admin endpoint answers 503 "admin token not configured".
    """

    model_config = SettingsConfigDict(env_prefix="HCP_HUB_", extra="ignore")

    db_path: Path = Path("var/hub.sqlite3")
    admin_token: SecretStr = SecretStr("")
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    public_url: str = Field(default="", description="base URL phones reach; default http://host:port")
    max_items: int = Field(default=DEFAULT_MAX_ITEMS, ge=1)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)

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
    def admin_configured(self) -> bool:
        return bool(self.admin_token.get_secret_value())
