"""Accounts and login sessions of the dashboard: salted password hashes, the users file, signed session cookies,
and the per-client throttle of failed logins.

Nothing here knows HTTP or Streamlit (rehab.app.gateway puts it on the server; ``rehab users`` edits the
file), so every rule is testable with plain calls. Passwords are never stored or compared in clear: the
users file holds scrypt hashes with a random salt each, and the one-user set-up (REHAB_APP_PASSWORD) is
hashed the same way when the server starts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rehab.store import now_iso

log = logging.getLogger(__name__)

USERS_FILE_NAME = "users.json"
USERS_FILE_VERSION = 1
# The account name the one-user set-up (REHAB_APP_PASSWORD) records in the audit table.
SHARED_ACCOUNT = "therapist"
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PASSWORD_MIN_LEN = 8
# scrypt cost: 2**14 x 8 x 128 bytes = 16 MiB and ~50 ms per check here, the interactive-login setting
# recommended in the scrypt paper; a stolen users file then costs an attacker the same per guess.
SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_KEY_BYTES = 32
_SCRYPT_MAXMEM = 64 * 1024 * 1024
SECRET_BYTES = 32
SESSION_ID_BYTES = 18


class AuthError(ValueError):
    """A users file or account that cannot be used; the message names the file or the account."""


# --------------------------------------------------------------------------------------------------
# password hashes


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$key`` (base64 parts): self-describing, so the cost can rise without a migration."""
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES) if salt is None else salt
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                         maxmem=_SCRYPT_MAXMEM, dklen=SCRYPT_KEY_BYTES)
    return "$".join(["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)])


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(key)
        got = hashlib.scrypt(password.encode("utf-8"), salt=_unb64(salt), n=int(n), r=int(r), p=int(p),
                             maxmem=_SCRYPT_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def check_new_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_LEN:
        raise AuthError(f"a password needs at least {PASSWORD_MIN_LEN} characters")
    if password != password.strip() or any(ord(c) < 32 for c in password):
        raise AuthError("a password must not start or end with spaces or contain control characters")
    return password


def check_user_name(name: str) -> str:
    if not isinstance(name, str) or not USER_NAME.fullmatch(name):
        raise AuthError(f"user name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit")
    return name


# --------------------------------------------------------------------------------------------------
# the users file


@dataclass(frozen=True)
class Accounts:
    """Who may log in: name -> password hash. Empty means no login is configured."""

    hashes: Mapping[str, str] = field(default_factory=dict)
    source: str = "none"

    @property
    def configured(self) -> bool:
        return bool(self.hashes)

    def check(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s; costs one scrypt either way, so timing does not tell names apart."""
        encoded = self.hashes.get(name)
        if encoded is None:
            verify_password(password, _DUMMY_HASH)
            return False
        return verify_password(password, encoded)


def read_users(path: Path) -> dict[str, dict]:
    """The accounts in a users file, or {} when it does not exist; AuthError naming the file when unusable."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise AuthError(f"users file {path} cannot be read: {err.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AuthError(f"users file {path} is not valid JSON ({err}); recreate it with `rehab users add NAME`") \
            from None
    if not isinstance(data, dict) or data.get("version") != USERS_FILE_VERSION or not isinstance(
            data.get("users"), dict):
        raise AuthError(f"users file {path} is not a version-{USERS_FILE_VERSION} rehab users file "
                        "(expected {\"version\": 1, \"users\": {...}})")
    users = data["users"]
    for name, entry in users.items():
        try:
            check_user_name(name)
        except AuthError as err:
            raise AuthError(f"users file {path}: {err}") from None
        if not isinstance(entry, dict) or not str(entry.get("hash", "")).startswith("scrypt$"):
            raise AuthError(f"users file {path}: account {name!r} has no scrypt password hash")
    return users


def write_users(path: Path, users: Mapping[str, dict]) -> Path:
    """Write the users file owner-only (0600) through a temporary name, whatever the umask."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump({"version": USERS_FILE_VERSION, "users": dict(users)}, f, indent=2, sort_keys=True)
    tmp.replace(path)
    return path


def add_user(path: Path, name: str, password: str) -> bool:
    """Add or replace ``name``'s password; True when the account is new."""
    check_user_name(name)
    check_new_password(password)
    users = read_users(path)
    new = name not in users
    users[name] = {"hash": hash_password(password), "created_at": users.get(name, {}).get("created_at", now_iso()),
                   "changed_at": now_iso()}
    write_users(path, users)
    return new


def remove_user(path: Path, name: str) -> None:
    users = read_users(path)
    if name not in users:
        raise AuthError(f"no account {name!r} in {path}")
    del users[name]
    write_users(path, users)


def load_accounts(users_file: Path, shared_password: str | None) -> Accounts:
    """The users file's accounts, plus the one-user set-up's password (hashed now) when it is set."""
    hashes = {name: entry["hash"] for name, entry in read_users(users_file).items()}
    sources = [str(users_file)] if hashes else []
    if shared_password:
        if SHARED_ACCOUNT in hashes:
            raise AuthError(f"REHAB_APP_PASSWORD is set and {users_file} also has an account {SHARED_ACCOUNT!r}; "
                            "use one or the other")
        hashes[SHARED_ACCOUNT] = hash_password(shared_password)
        sources.append("REHAB_APP_PASSWORD")
    return Accounts(hashes, " + ".join(sources) or "none")


# --------------------------------------------------------------------------------------------------
# signed session cookies


@dataclass(frozen=True)
class LoginSession:
    sid: str
    user: str
    issued_at_s: float
    expires_at_s: float


class SessionSigner:
    """Signs and checks session tokens: ``base64(json).base64(hmac-sha256)`` under this server's secret.

    A token is valid while its signature checks, it has not expired, and its session is still open on this
    server (logout and a restart close it): a cookie from another server's secret, or a forged or edited
    one, fails the signature.
    """

    def __init__(self, lifetime_s: float, secret: bytes | None = None) -> None:
        self.lifetime_s = float(lifetime_s)
        self._secret = secret if secret is not None else secrets.token_bytes(SECRET_BYTES)
        self._open: dict[str, LoginSession] = {}
        self._lock = threading.Lock()

    def issue(self, user: str, now_s: float | None = None) -> tuple[str, LoginSession]:
        now_s = time.time() if now_s is None else now_s
        session = LoginSession(secrets.token_urlsafe(SESSION_ID_BYTES), user, now_s, now_s + self.lifetime_s)
        with self._lock:
            self._drop_expired(now_s)
            self._open[session.sid] = session
        body = _b64(json.dumps({"sid": session.sid, "user": user, "iat": int(now_s),
                                "exp": int(session.expires_at_s)}, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}", session

    def verify(self, token: str | None, now_s: float | None = None) -> LoginSession | None:
        if not token or token.count(".") != 1:
            return None
        body, mac = token.split(".")
        # As bytes: a cookie may carry any character, and compare_digest refuses non-ASCII strings.
        if not hmac.compare_digest(mac.encode("utf-8", "replace"), self._mac(body).encode("ascii")):
            return None
        try:
            claims = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            return None
        now_s = time.time() if now_s is None else now_s
        if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int) or claims["exp"] <= now_s:
            return None
        with self._lock:
            session = self._open.get(str(claims.get("sid")))
        if session is None or session.user != claims.get("user") or session.expires_at_s <= now_s:
            return None
        return session

    def is_open(self, sid: str, now_s: float | None = None) -> bool:
        now_s = time.time() if now_s is None else now_s
        with self._lock:
            session = self._open.get(sid)
        return session is not None and session.expires_at_s > now_s

    def revoke(self, sid: str) -> None:
        with self._lock:
            self._open.pop(sid, None)

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode("ascii", "replace"), hashlib.sha256).digest())

    def _drop_expired(self, now_s: float) -> None:
        for sid in [s for s, v in self._open.items() if v.expires_at_s <= now_s]:
            del self._open[sid]


# --------------------------------------------------------------------------------------------------
# throttling failed logins


@dataclass(frozen=True)
class ThrottlePolicy:
    # Failures a client may make before it is locked out.
    max_failures: int = 5
    # Failures older than this are forgotten.
    window_s: float = 15 * 60.0
    # Every failed attempt is answered only after this delay (an online guesser's rate, even before lock-out).
    failure_delay_s: float = 1.0
    # The first lock-out; each further one (failures while locked) doubles it, up to the maximum.
    lockout_s: float = 60.0
    max_lockout_s: float = 60 * 60.0


class LoginThrottle:
    """Per-client failure counts and lock-outs (a client is its address). Thread-safe."""

    def __init__(self, policy: ThrottlePolicy | None = None) -> None:
        self.policy = policy or ThrottlePolicy()
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lockouts: dict[str, int] = {}
        self._lock = threading.Lock()

    def locked_for_s(self, client: str, now_s: float | None = None) -> float:
        """Seconds the client stays locked out (0 when it may try)."""
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            return max(0.0, self._locked_until.get(client, 0.0) - now_s)

    def failed(self, client: str, now_s: float | None = None) -> float:
        """Count a failure; returns the lock-out in seconds it started (0 when none)."""
        now_s = time.monotonic() if now_s is None else now_s
        p = self.policy
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now_s - t < p.window_s] + [now_s]
            self._failures[client] = recent
            if len(recent) < p.max_failures:
                return 0.0
            count = self._lockouts.get(client, 0)
            duration = min(p.lockout_s * 2 ** count, p.max_lockout_s)
            self._lockouts[client] = count + 1
            self._locked_until[client] = now_s + duration
            self._failures[client] = []
            return duration

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)
            self._lockouts.pop(client, None)
            self._locked_until.pop(client, None)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# A hash of a random password, checked for unknown user names so that they cost the same time as known ones.
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
