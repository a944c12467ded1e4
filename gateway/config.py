"""Gateway settings: one `pydantic_settings.BaseSettings`, from `HCP_GW_*` variables and/or a JSON file.

Precedence, highest first: values passed in code (command-line flags), environment variables,
the JSON file, the defaults below.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from hcp.protocol import DEVICE_RE, HALL_RE, WINDOW_RE

DB_FILENAME = "gateway.sqlite3"


def _identifier(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.fullmatch(value):
        raise ValueError(f"bad {what} id {value!r}")
    return value


class DeviceSeed(BaseModel):
    """A device and the window it serves, registered when the gateway starts."""

    device: str
    window: str

    @field_validator("device")
    @classmethod
    def _device_id(cls, value: str) -> str:
        return _identifier(value, DEVICE_RE, "device")

    @field_validator("window")
    @classmethod
    def _window_id(cls, value: str) -> str:
        return _identifier(value, WINDOW_RE, "window")


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HCP_GW_", extra="forbid")

    hall: str
    data_dir: Path
    broker_host: str = "127.0.0.1"
    broker_port: int = Field(1883, ge=1, le=65535)
    broker_username: str | None = None
    broker_password: SecretStr | None = None
    broker_secret: SecretStr | None = Field(
        None, min_length=16, description="derives device broker passwords (broker_config.py); "
                                         "default: derived from gateway_key")
    hub_url: str
    hub_token: SecretStr
    gateway_key: SecretStr = Field(description="64 hex characters (32 bytes); signs phone tokens")
    phone_url: str | None = Field(None, description="base URL of the hub's phone page; default hub_url")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8710, ge=0, le=65535)
    queue_token: SecretStr
    admin_token: SecretStr
    prompt_on: Literal["finished", "accepted"] = "finished"
    session_ttl_s: int = Field(60, ge=1, le=3600)
    local_bind_tolerance_s: float = Field(120.0, ge=0)
    forward_batch: int = Field(1000, ge=1, le=1000)  # drains faster than 500 (bench)
    forward_interval_s: float = Field(0.2, gt=0)
    retry_min_s: float = Field(0.5, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
    retry_seed: int | None = Field(None, description="seed for the retry jitter (tests); None = random")
    # registry, health and alerts (docs/gateway.md, "Registry and presence", "Alerts")
    health_period_s: float = Field(60.0, gt=0, description="a device's health period until two of "
                                   "its healths show its own (the firmware's default health_s)")
    offline_after_periods: float = Field(3.0, ge=1, description="nothing heard for this many health "
                                         "periods: offline, with or without a last will")
    registry_sweep_s: float = Field(5.0, gt=0, description="how often timeouts and time-based "
                                    "alerts are checked")
    alert_offline_after_s: float = Field(120.0, ge=0, description="offline this long: alert")
    alert_outbox_max: int = Field(20, ge=0, description="device flash outbox (health ob) above: alert")
    alert_outbox_rising: int = Field(3, ge=1, description="ob larger in this many healths in a row: alert")
    alert_clock_jump_ms: int = Field(5000, ge=1, description="device clock offset moving more "
                                     "than this between two healths of one boot: alert")
    alert_reboots: int = Field(4, ge=1, description="boot count rising this much within "
                               "alert_reboots_window_s: alert")
    alert_reboots_window_s: float = Field(3600.0, gt=0)
    alert_gap_after_s: float = Field(300.0, ge=0, description="a skipped rating counter still "
                                     "missing after this long: alert")
    hub_health: bool = Field(True, description="forward health snapshots and alert changes to the hub")
    hub_health_interval_s: float = Field(300.0, gt=0, description="at most one health snapshot per "
                                         "device per this many seconds")
    # capacity (docs/gateway.md, "Capacity and retention")
    outbox_keep_days: float = Field(7.0, ge=0, description="outbox rows the hub took are deleted "
                                    "this long after; pending and dead rows and ratings stay")
    prune_interval_s: float = Field(3600.0, gt=0, description="how often old sent rows are pruned")
    db_max_mb: float | None = Field(None, gt=0, description="cap on the database file (MiB): past "
                                    "it writes fail as on a full disk; default: the disk is the cap")
    devices: list[DeviceSeed] = Field(default_factory=list)

    @field_validator("hall")
    @classmethod
    def _hall_id(cls, value: str) -> str:
        return _identifier(value, HALL_RE, "hall")

    @field_validator("gateway_key")
    @classmethod
    def _key_hex(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError("gateway_key must be hex") from None
        if len(raw) != 32:
            raise ValueError("gateway_key must be 32 bytes (64 hex characters)")
        return value

    @field_validator("hub_url", "phone_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _retry_bounds(self) -> "GatewaySettings":
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must be >= retry_min_s")
        return self

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILENAME

    @property
    def gateway_key_bytes(self) -> bytes:
        return bytes.fromhex(self.gateway_key.get_secret_value())

    @property
    def phone_base(self) -> str:
        return self.phone_url or self.hub_url

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("json_file"):
            sources.append(JsonConfigSettingsSource(settings_cls))
        return tuple(sources)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> GatewaySettings:
    """Settings from `config_file` (JSON) and the environment; `overrides` (flags) win.

    The file is attached to a subclass rather than to `GatewaySettings.model_config`, so loading one
    file never changes what another load in the same process sees.
    """
    cls: type[GatewaySettings] = GatewaySettings
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        cls = type("FileGatewaySettings", (GatewaySettings,),
                   {"model_config": {**GatewaySettings.model_config, "json_file": path}})
    return cls(**{k: v for k, v in overrides.items() if v is not None})
