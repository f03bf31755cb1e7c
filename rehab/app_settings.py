"""Settings of the dashboard itself (not of the pose pipeline): data folder, upload limit, password, defaults.

Defaults live in code; an optional YAML file (``REHAB_APP_CONFIG`` or an explicit path) overrides them, and
environment variables override both. ``rehab app`` hands its choices to the Streamlit process through the
same environment variables, so the app reads its settings one way whoever started it.

The password is never written anywhere by this module; it is compared in constant time by the app.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

ENV_CONFIG = "REHAB_APP_CONFIG"
ENV_DATA_DIR = "REHAB_APP_DATA_DIR"
ENV_MODEL = "REHAB_APP_MODEL"
ENV_PASSWORD = "REHAB_APP_PASSWORD"
ENV_MAX_UPLOAD_MB = "REHAB_APP_MAX_UPLOAD_MB"
ENV_ANONYMIZE_DEFAULT = "REHAB_APP_ANONYMIZE_DEFAULT"
ENV_RUNTIME_SETTINGS = "REHAB_APP_RUNTIME_SETTINGS"
ENV_THREADS = "REHAB_APP_THREADS"

# Relative to the working directory the app was started from: never the home directory.
DEFAULT_DATA_DIR = Path("rehab-data")
# Streamlit's own default upload limit; a few minutes of 1080p phone video.
DEFAULT_MAX_UPLOAD_MB = 200
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class AppSettings:
    # Where the history database, recordings and upload results are kept.
    data_dir: Path = DEFAULT_DATA_DIR
    # None: the embedded default model (rehab/models/default.onnx).
    model_path: Path | None = None
    # Required to open the app when set; required to listen beyond localhost.
    password: str | None = None
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    # Face blurring is on unless the therapist turns it off (with a confirmation) in a session.
    anonymize_default: bool = True
    # Optional YAML of rehab.settings.RuntimeSettings (smoothing, thresholds, drawing, anonymisation).
    runtime_settings_path: Path | None = None
    # ONNX Runtime intra-op threads; None lets the model loader decide.
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_upload_mb, bool) or not isinstance(self.max_upload_mb, int) or self.max_upload_mb < 1:
            raise ValueError(f"max_upload_mb must be a whole number of megabytes >= 1, got {self.max_upload_mb!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be a whole number >= 1 or empty, got {self.threads!r}")
        if self.password is not None and not self.password.strip():
            raise ValueError("password must not be blank; leave it unset to run without one on localhost")

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def password_required(self) -> bool:
        return bool(self.password)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "app settings") -> AppSettings:
        if not isinstance(data, Mapping):
            raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)} in {where}; known: {', '.join(sorted(known))}")
        values = dict(data)
        for name in ("data_dir", "model_path", "runtime_settings_path"):
            if values.get(name) is not None:
                values[name] = Path(values[name]).expanduser()
        return replace(cls(), **values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> AppSettings:
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"app settings file not found: {path}")
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls.from_dict(data, where=str(path))

    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> AppSettings:
        """Defaults, then the YAML file (``path`` or $REHAB_APP_CONFIG), then environment variables."""
        env = os.environ if env is None else env
        path = path or env.get(ENV_CONFIG) or None
        settings = cls.from_yaml(path) if path else cls()
        return settings.with_env(env)

    def with_env(self, env: Mapping[str, str]) -> AppSettings:
        changes: dict[str, Any] = {}
        if env.get(ENV_DATA_DIR):
            changes["data_dir"] = Path(env[ENV_DATA_DIR]).expanduser()
        if env.get(ENV_MODEL):
            changes["model_path"] = Path(env[ENV_MODEL]).expanduser()
        if env.get(ENV_PASSWORD):
            changes["password"] = env[ENV_PASSWORD]
        if env.get(ENV_RUNTIME_SETTINGS):
            changes["runtime_settings_path"] = Path(env[ENV_RUNTIME_SETTINGS]).expanduser()
        if env.get(ENV_MAX_UPLOAD_MB):
            changes["max_upload_mb"] = _int_env(env, ENV_MAX_UPLOAD_MB)
        if env.get(ENV_THREADS):
            changes["threads"] = _int_env(env, ENV_THREADS)
        if env.get(ENV_ANONYMIZE_DEFAULT):
            changes["anonymize_default"] = _bool_env(env, ENV_ANONYMIZE_DEFAULT)
        return replace(self, **changes) if changes else self

    def to_env(self) -> dict[str, str]:
        """The environment variables that make a Streamlit process load exactly these settings."""
        env = {ENV_DATA_DIR: str(self.data_dir), ENV_MAX_UPLOAD_MB: str(self.max_upload_mb),
               ENV_ANONYMIZE_DEFAULT: "1" if self.anonymize_default else "0"}
        if self.model_path is not None:
            env[ENV_MODEL] = str(self.model_path)
        if self.password:
            env[ENV_PASSWORD] = self.password
        if self.runtime_settings_path is not None:
            env[ENV_RUNTIME_SETTINGS] = str(self.runtime_settings_path)
        if self.threads is not None:
            env[ENV_THREADS] = str(self.threads)
        return env


def _int_env(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"environment variable {name} must be a whole number, got {env[name]!r}") from None


def _bool_env(env: Mapping[str, str], name: str) -> bool:
    value = env[name].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"environment variable {name} must be one of {_TRUE + _FALSE}, got {env[name]!r}")


def is_loopback(host: str | None) -> bool:
    """Whether binding to ``host`` keeps the app reachable from this machine only.

    An empty host means "all interfaces" to Streamlit (and to sockets in general), so it is not loopback.
    """
    if not host:
        return False
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        # A host name other than localhost may resolve to any interface.
        return False
