"""One typed settings class: environment prefix SURGREVIEW_, an optional TOML file, derived default paths.

Every field carries a description; a test fails when one does not (the README table is built from them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

CONFIG_ENV = "SURGREVIEW_CONFIG"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SURGREVIEW_", extra="forbid", validate_default=True)

    data_dir: Path = Field(Path("data"), description="Folder for the embedded database, frame store and exports.")
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means SQLite at <data_dir>/surgreview.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db.")
    frame_store_dir: Path | None = Field(None, description="Frame store root; default <data_dir>/frames.")
    max_image_pixels: int = Field(
        40_000_000, gt=0, description="Largest accepted image in pixels (width x height); larger is rejected "
        "before decoding, as a decompression-bomb guard.")
    max_image_bytes: int = Field(64 * 1024 * 1024, gt=0, description="Largest accepted image file in bytes.")
    thumbnail_size: int = Field(320, ge=32, le=1024, description="Longest side of list thumbnails in pixels.")
    video_frame_quality: int = Field(95, ge=50, le=100,
                                     description="JPEG quality of frames sampled from videos.")
    host: str = Field("127.0.0.1", description="Address the web app listens on.")
    port: int = Field(7860, gt=0, lt=65536, description="Port the web app listens on.")
    model_registry: Path | None = Field(None, description="Model registry TOML ([[models]] tables); default "
                                        "<data_dir>/models.toml.")
    upgrade_on_start: bool = Field(True, description="Apply database migrations when the app starts.")
    # --- sign-in ---
    secret_key: SecretStr = Field(
        SecretStr(""), description="Key that signs session cookies; empty means one generated once and kept in "
        "<data_dir>/secret_key (mode 0600), so sessions survive restarts. Give every app process the same key.")
    session_max_age_s: int = Field(43_200, gt=0, description="A sign-in lasts at most this many seconds.")
    cookie_secure: bool = Field(False, description="Send the session cookie over HTTPS only; set true behind "
                                "HTTPS.")
    oidc_issuer: str = Field("", description="Hospital SSO: OpenID Connect issuer URL (discovery at "
                             "<issuer>/.well-known/openid-configuration); empty turns SSO off.")
    oidc_client_id: str = Field("", description="Hospital SSO: client id registered with the identity provider.")
    oidc_client_secret: SecretStr = Field(SecretStr(""), description="Hospital SSO: client secret.")
    oidc_scope: str = Field("openid profile email", description="Hospital SSO: scopes asked for.")
    oidc_roles_claim: str = Field(
        "roles", description="Hospital SSO: ID-token claim listing the user's roles (unknown ones ignored); "
        "empty means roles are assigned by an admin in the app.")
    oidc_username_claim: str = Field("preferred_username",
                                     description="Hospital SSO: ID-token claim used as the username.")
    login_rate_limit: int = Field(5, gt=0, description="Failed sign-ins allowed per username and per client "
                                  "address within login_rate_window_s before further attempts get 429.")
    login_rate_window_s: int = Field(300, gt=0, description="Window of the failed sign-in limit, in seconds.")
    label_studio_url: str = Field("", description="Label Studio server for `surgreview labelstudio push/pull`, "
                                  "e.g. http://127.0.0.1:8080.")
    label_studio_token: SecretStr = Field(SecretStr(""), description="Label Studio legacy API token (Account & "
                                          "Settings) for push and pull.")
    annotation_consensus_iou: float = Field(0.5, ge=0, le=1, description="Go Zone agreement studies: every "
                                            "pair of annotators' boxes must overlap at least this much (IoU), "
                                            "with the same phase, before a case can be approved.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"{CONFIG_ENV} points to {config_file!r}, which is not a file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'surgreview.db').as_posix()}"
        if self.frame_store_dir is None:
            self.frame_store_dir = self.data_dir / "frames"
        if self.model_registry is None:
            self.model_registry = self.data_dir / "models.toml"
        return self

    @property
    def frames_dir(self) -> Path:
        assert self.frame_store_dir is not None
        return self.frame_store_dir


def settings_table() -> list[dict[str, Any]]:
    """Name, environment variable, default and description of every setting (for docs and tests)."""
    rows = []
    for name, field in Settings.model_fields.items():
        rows.append({"name": name, "env": f"SURGREVIEW_{name.upper()}", "default": field.default,
                     "description": field.description})
    return rows
