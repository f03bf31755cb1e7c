"""Settings of the dashboard itself (not of the pose pipeline): data folder, upload limit, accounts, defaults.

Defaults live in code; an optional YAML file (``REHAB_APP_CONFIG`` or an explicit path) overrides them, and
environment variables override both. ``rehab app`` hands its choices to the Streamlit process through the
same environment variables, so the app reads its settings one way whoever started it.

The password is never written anywhere by this module; the server hashes it when it starts
(rehab.accounts). Every value is checked here, so that a bad one stops ``rehab app`` with one line naming it.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rehab.core.config import ConfigError, from_dict, read_yaml_mapping

ENV_CONFIG = "REHAB_APP_CONFIG"
ENV_DATA_DIR = "REHAB_APP_DATA_DIR"
ENV_MODEL = "REHAB_APP_MODEL"
ENV_PASSWORD = "REHAB_APP_PASSWORD"
ENV_MAX_UPLOAD_MB = "REHAB_APP_MAX_UPLOAD_MB"
ENV_ANONYMIZE_DEFAULT = "REHAB_APP_ANONYMIZE_DEFAULT"
ENV_RUNTIME_SETTINGS = "REHAB_APP_RUNTIME_SETTINGS"
ENV_THREADS = "REHAB_APP_THREADS"
ENV_USERS_FILE = "REHAB_APP_USERS_FILE"
ENV_SESSION_HOURS = "REHAB_APP_SESSION_HOURS"
# Single sign-on with an OpenID Connect identity provider (rehab.app.sso): field name -> environment variable.
SSO_ENV = {"sso_metadata_url": "REHAB_APP_SSO_METADATA_URL", "sso_client_id": "REHAB_APP_SSO_CLIENT_ID",
           "sso_client_secret": "REHAB_APP_SSO_CLIENT_SECRET", "sso_redirect_uri": "REHAB_APP_SSO_REDIRECT_URI",
           "sso_user_claim": "REHAB_APP_SSO_USER_CLAIM"}
SSO_REQUIRED = ("sso_metadata_url", "sso_client_id", "sso_client_secret", "sso_redirect_uri")

APP_DIR_NAME = "rehab-pose"
# A login lasts one clinic shift; then the browser asks again.
DEFAULT_SESSION_HOURS = 12.0
MAX_SESSION_HOURS = 24.0 * 7
# Streamlit's own default upload limit; a few minutes of 1080p phone video.
DEFAULT_MAX_UPLOAD_MB = 200
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class AppSettings:
    # Where the history database, recordings and upload results are kept: the per-user data folder
    # (platformdirs), never the working directory, which may be a shared folder or a git checkout.
    data_dir: Path = field(default_factory=lambda: default_data_dir())
    # None: the embedded default model (rehab/models/default.onnx).
    model_path: Path | None = None
    # The one-user set-up: a password for the account "therapist". Per-user accounts live in the users file.
    password: str | None = None
    # Accounts written by `rehab users add NAME`; None: users.json in the data folder.
    users_file: Path | None = None
    # How long a login lasts before the browser has to log in again.
    session_hours: float = DEFAULT_SESSION_HOURS
    max_upload_mb: int = DEFAULT_MAX_UPLOAD_MB
    # Face blurring is on unless the therapist turns it off (with a confirmation) in a session.
    anonymize_default: bool = True
    # Optional YAML of rehab.settings.RuntimeSettings (smoothing, thresholds, drawing, anonymisation).
    runtime_settings_path: Path | None = None
    # ONNX Runtime intra-op threads; None lets the model loader decide.
    threads: int | None = None
    # Single sign-on (all four or none): the identity provider's .well-known/openid-configuration URL, this app's
    # client id and secret there, and the redirect URI registered with it (https://HOST/auth/oidc/callback).
    sso_metadata_url: str | None = None
    sso_client_id: str | None = None
    sso_client_secret: str | None = None
    sso_redirect_uri: str | None = None
    # The ID-token claim that names the user in the history's audit table.
    sso_user_claim: str = "email"

    def __post_init__(self) -> None:
        if isinstance(self.max_upload_mb, bool) or not isinstance(self.max_upload_mb, int) or self.max_upload_mb < 1:
            raise ValueError(f"max_upload_mb must be a whole number of megabytes >= 1, got {self.max_upload_mb!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ValueError(f"threads must be a whole number >= 1 or empty, got {self.threads!r}")
        if self.password is not None and (not isinstance(self.password, str) or not self.password.strip()):
            raise ValueError("password must not be blank; leave it unset to run without one on localhost")
        if isinstance(self.session_hours, bool) or not isinstance(self.session_hours, (int, float)) or not (
                0 < self.session_hours <= MAX_SESSION_HOURS):
            raise ValueError(f"session_hours must be a number of hours in (0, {MAX_SESSION_HOURS:g}], "
                             f"got {self.session_hours!r}")
        self._check_sso()

    def _check_sso(self) -> None:
        from rehab.app.sso import CALLBACK_PATH

        given = {name: getattr(self, name) for name in SSO_REQUIRED}
        for name, value in given.items():
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name} must be a non-blank text or unset, got {value!r}")
        if not any(given.values()):
            return
        missing = [name for name, value in given.items() if not value]
        if missing:
            raise ValueError(f"single sign-on needs {', '.join(SSO_REQUIRED)} together; missing {', '.join(missing)}")
        for name in ("sso_metadata_url", "sso_redirect_uri"):
            url = urllib.parse.urlsplit(given[name])
            if url.scheme != "https" and not (url.scheme == "http" and is_loopback(url.hostname)):
                raise ValueError(f"{name} must be an https:// URL (http:// only on localhost), got {given[name]!r}")
        if urllib.parse.urlsplit(given["sso_redirect_uri"]).path != CALLBACK_PATH:
            raise ValueError(f"sso_redirect_uri must end in {CALLBACK_PATH} (this server's callback), "
                             f"got {given['sso_redirect_uri']!r}")
        if not isinstance(self.sso_user_claim, str) or not self.sso_user_claim.strip():
            raise ValueError(f"sso_user_claim must name an ID-token claim, got {self.sso_user_claim!r}")

    @property
    def sso(self):
        """rehab.app.sso.SsoConfig when single sign-on is configured, else None."""
        if not self.sso_metadata_url:
            return None
        from rehab.app.sso import SsoConfig

        return SsoConfig(self.sso_metadata_url, self.sso_client_id, self.sso_client_secret,  # type: ignore[arg-type]
                         self.sso_redirect_uri, self.sso_user_claim)  # type: ignore[arg-type]

    @property
    def users_path(self) -> Path:
        return self.users_file if self.users_file is not None else Path(self.data_dir) / "users.json"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 1024 * 1024

    @property
    def password_required(self) -> bool:
        """Whether a login is configured: the shared password or at least one account in the users file.

        An unusable users file counts as configured (never as "open"): starting refuses it with its error.
        """
        if self.password or self.sso_metadata_url:
            return True
        from rehab.accounts import AuthError, read_users

        try:
            return bool(read_users(self.users_path))
        except AuthError:
            return True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "app settings") -> AppSettings:
        """Settings from a mapping (rehab.core.config, the one strict loader): unknown keys and bad values
        are refused by name; missing keys keep their defaults."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping of keys to values, got {type(data).__name__}")
        return from_dict(cls, dict(data), where)

    @classmethod
    def from_yaml(cls, path: str | Path) -> AppSettings:
        data = read_yaml_mapping(path, "app settings file")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> AppSettings:
        """Defaults, then the YAML file (``path`` or $REHAB_APP_CONFIG), then environment variables."""
        env = os.environ if env is None else env
        path = path or env.get(ENV_CONFIG) or None
        settings = cls.from_yaml(path) if path else cls()
        return settings.with_env(env)

    def with_env(self, env: Mapping[str, str]) -> AppSettings:
        changes: dict[str, Any] = {}
        if ENV_PASSWORD in env:
            # Set but blank is a mistake (an empty secret in a unit file), not "no password".
            if not env[ENV_PASSWORD].strip():
                raise ValueError(f"environment variable {ENV_PASSWORD} is set but blank; give it a password or "
                                 "unset it")
            changes["password"] = env[ENV_PASSWORD]
        for name, key in ((ENV_DATA_DIR, "data_dir"), (ENV_MODEL, "model_path"),
                          (ENV_RUNTIME_SETTINGS, "runtime_settings_path"), (ENV_USERS_FILE, "users_file")):
            if env.get(name, "").strip():
                changes[key] = Path(env[name]).expanduser()
        if env.get(ENV_MAX_UPLOAD_MB):
            changes["max_upload_mb"] = _int_env(env, ENV_MAX_UPLOAD_MB)
        if env.get(ENV_THREADS):
            changes["threads"] = _int_env(env, ENV_THREADS)
        if env.get(ENV_ANONYMIZE_DEFAULT):
            changes["anonymize_default"] = _bool_env(env, ENV_ANONYMIZE_DEFAULT)
        if env.get(ENV_SESSION_HOURS):
            changes["session_hours"] = _float_env(env, ENV_SESSION_HOURS)
        for key, name in SSO_ENV.items():
            if env.get(name, "").strip():
                changes[key] = env[name].strip()
        try:
            return replace(self, **changes) if changes else self
        except ValueError as err:
            raise ValueError(f"{err} (from the REHAB_APP_* environment variables)") from None

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
        if self.users_file is not None:
            env[ENV_USERS_FILE] = str(self.users_file)
        env[ENV_SESSION_HOURS] = repr(float(self.session_hours))
        for key, name in SSO_ENV.items():
            if getattr(self, key) is not None and (key != "sso_user_claim" or self.sso_metadata_url):
                env[name] = str(getattr(self, key))
        return env


def default_data_dir() -> Path:
    """The per-user data folder (e.g. ~/.local/share/rehab-pose on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_DIR_NAME, appauthor=False))


def _int_env(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ValueError(f"environment variable {name} must be a whole number, got {env[name]!r}") from None


def _float_env(env: Mapping[str, str], name: str) -> float:
    try:
        return float(env[name])
    except ValueError:
        raise ValueError(f"environment variable {name} must be a number, got {env[name]!r}") from None


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
