"""Single sign-on with a clinic's OpenID Connect identity provider (Entra ID, Google Workspace, Keycloak, ...).

The gateway (rehab.app.gateway) runs the authorization code flow itself, with PKCE, state and nonce, and then
issues its own session cookie exactly as the password login does, so every route stays behind the same check:

1. ``GET /auth/oidc`` (the login page's button): a pending login (state, nonce, PKCE verifier, where to go
   next) is kept in this process for a few minutes, the browser gets the state in a short-lived cookie and is
   sent to the provider's authorization endpoint;
2. the provider sends the browser back to ``GET /auth/oidc/callback?code=...&state=...``: the state must match
   both the cookie and a pending login (once), the code is redeemed at the token endpoint with the client
   secret and the verifier, and the ID token's signature (the provider's published keys), issuer, audience,
   expiry and nonce are checked. Its ``user_claim`` (default ``email``) names the user in the audit table.

Who may log in is the provider's decision (the clinic assigns the app to its staff there). Only the metadata URL,
the client id and secret and the redirect URI are configured (rehab.app_settings, ``sso_*``).
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import secrets
import threading
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

CALLBACK_PATH = "/auth/oidc/callback"
START_PATH = "/auth/oidc"
STATE_COOKIE = "rehab_sso_state"
# A login started and not finished within this time is forgotten (the provider's page may ask for MFA).
PENDING_TTL_S = 600.0
# Unauthenticated browsers can start logins: at most this many wait at a time, the oldest dropped first.
MAX_PENDING = 256
HTTP_TIMEOUT_S = 10.0
# The provider's metadata and keys are fetched again after this long (keys rotate).
METADATA_TTL_S = 3600.0
# Tolerated clock difference with the provider when checking the ID token's times.
CLOCK_SKEW_S = 120
MAX_USER_NAME = 254
SIGNING_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]


class SsoError(Exception):
    """A single sign-on that cannot go on; the message is shown on the login page."""


@dataclass(frozen=True)
class SsoConfig:
    metadata_url: str  # the provider's .well-known/openid-configuration
    client_id: str
    client_secret: str
    redirect_uri: str  # https://HOST/auth/oidc/callback, as registered with the provider
    user_claim: str = "email"


@dataclass(frozen=True)
class Pending:
    state: str
    nonce: str
    verifier: str
    next_path: str
    started_s: float


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


class OidcClient:
    """The relying party: builds the provider's login URL and turns its callback into a verified user name."""

    def __init__(self, config: SsoConfig, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        self.config = config
        self.timeout_s = timeout_s
        self._pending: dict[str, Pending] = {}
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: Any = None
        self._fetched_s = 0.0

    # -- provider metadata and keys ---------------------------------------------------------------

    def _get_json(self, url: str, what: str) -> dict:
        import requests

        try:
            response = requests.get(url, timeout=self.timeout_s)
            response.raise_for_status()
            data = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SsoError(f"the identity provider's {what} could not be read ({type(exc).__name__}); "
                           "try again, or ask the administrator to check sso_metadata_url") from None
        if not isinstance(data, dict):
            raise SsoError(f"the identity provider's {what} is not a JSON object")
        return data

    def metadata(self, refresh: bool = False) -> dict:
        if self._metadata is None or refresh or time.monotonic() - self._fetched_s > METADATA_TTL_S:
            data = self._get_json(self.config.metadata_url, "metadata")
            missing = [k for k in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri") if not data.get(k)]
            if missing:
                raise SsoError(f"the identity provider's metadata lacks {', '.join(missing)}")
            self._metadata, self._keys, self._fetched_s = data, None, time.monotonic()
        return self._metadata

    def _key_set(self, refresh: bool = False):
        from joserfc.jwk import KeySet

        if self._keys is None or refresh:
            self._keys = KeySet.import_key_set(self._get_json(self.metadata()["jwks_uri"], "signing keys"))
        return self._keys

    # -- the flow ---------------------------------------------------------------------------------

    def start(self, next_path: str, now_s: float | None = None) -> tuple[str, str]:
        """(the provider's authorization URL, the state for the browser's cookie)."""
        now_s = time.time() if now_s is None else now_s
        pending = Pending(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48),
                          next_path, now_s)
        endpoint = self.metadata()["authorization_endpoint"]
        with self._lock:
            self._drop_old(now_s)
            while len(self._pending) >= MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            self._pending[pending.state] = pending
        query = urllib.parse.urlencode({
            "response_type": "code", "client_id": self.config.client_id, "redirect_uri": self.config.redirect_uri,
            "scope": "openid email profile", "state": pending.state, "nonce": pending.nonce,
            "code_challenge": _challenge(pending.verifier), "code_challenge_method": "S256"})
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", pending.state

    def take_pending(self, state: str | None, cookie_state: str | None, now_s: float | None = None) -> Pending:
        """The pending login of ``state``, once: it must match the browser's cookie and still be waiting."""
        now_s = time.time() if now_s is None else now_s
        if not state or not cookie_state or not secrets.compare_digest(state.encode(), cookie_state.encode()):
            raise SsoError("This sign-in was not started from this browser (or took too long). Start it again.")
        with self._lock:
            self._drop_old(now_s)
            pending = self._pending.pop(state, None)
        if pending is None:
            raise SsoError("This sign-in has expired or was already used. Start it again.")
        return pending

    def finish(self, pending: Pending, code: str | None) -> str:
        """Redeem ``code`` and verify the ID token; the user name its ``user_claim`` gives."""
        if not code:
            raise SsoError("The identity provider sent no login code.")
        token = self._redeem(code, pending.verifier)
        claims = self._verify(token, pending.nonce)
        user = claims.get(self.config.user_claim)
        if not isinstance(user, str) or not user.strip():
            raise SsoError(f"The identity provider did not say who you are (no {self.config.user_claim!r} in the "
                           "ID token); ask the administrator to release that claim to this app.")
        user = user.strip()
        if len(user) > MAX_USER_NAME or any(unicodedata.category(c).startswith("C") for c in user):
            raise SsoError("The identity provider gave a user name this app cannot record.")
        return user

    def _redeem(self, code: str, verifier: str) -> str:
        import requests

        meta = self.metadata()
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.config.redirect_uri,
                "code_verifier": verifier}
        methods = meta.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        auth = None
        if "client_secret_basic" in methods:
            auth = (urllib.parse.quote(self.config.client_id, safe=""),
                    urllib.parse.quote(self.config.client_secret, safe=""))
        else:
            form.update(client_id=self.config.client_id, client_secret=self.config.client_secret)
        try:
            response = requests.post(meta["token_endpoint"], data=form, auth=auth, timeout=self.timeout_s,
                                     headers={"Accept": "application/json"})
            body = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise SsoError(f"The identity provider could not be reached to finish the sign-in "
                           f"({type(exc).__name__}). Try again.") from None
        if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("id_token"), str):
            error = body.get("error") if isinstance(body, dict) else None
            raise SsoError(f"The identity provider refused the login code ({error or response.status_code}). "
                           "Start the sign-in again.")
        return body["id_token"]

    def _verify(self, id_token: str, nonce: str) -> dict:
        from joserfc import jwt
        from joserfc.errors import JoseError

        try:
            try:
                token = jwt.decode(id_token, self._key_set(), algorithms=SIGNING_ALGORITHMS)
            except JoseError:
                token = jwt.decode(id_token, self._key_set(refresh=True), algorithms=SIGNING_ALGORITHMS)
            jwt.JWTClaimsRegistry(
                leeway=CLOCK_SKEW_S,
                iss={"essential": True, "value": self.metadata()["issuer"]},
                aud={"essential": True, "value": self.config.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise SsoError(f"The identity provider's answer did not verify ({type(exc).__name__}). "
                           "Start the sign-in again.") from None
        return dict(token.claims)

    def _drop_old(self, now_s: float) -> None:
        for state in [s for s, p in self._pending.items() if now_s - p.started_s > PENDING_TTL_S]:
            del self._pending[state]

    @property
    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)


class SsoRoutes:
    """``GET /auth/oidc`` and ``GET /auth/oidc/callback`` on the gateway's server (rehab.app.gateway)."""

    def __init__(self, gateway, client: OidcClient) -> None:
        self.gateway = gateway
        self.client = client

    async def start(self, request):
        import asyncio

        from starlette.responses import RedirectResponse

        from rehab.app.gateway import client_address, is_https, safe_next

        target = safe_next(request.query_params.get("next"))
        locked = self.gateway.locked_out(client_address(request.scope), target)
        if locked is not None:
            return locked
        try:
            url, state = await asyncio.to_thread(self.client.start, target)
        except SsoError as exc:
            log.warning("single sign-on could not start: %s", exc)
            return self.gateway.login_response(target, str(exc), status=502)
        response = RedirectResponse(url, status_code=303, headers={"cache-control": "no-store"})
        # Lax, not Strict: the provider sends the browser back with a top-level navigation from its own site.
        response.set_cookie(STATE_COOKIE, state, max_age=int(PENDING_TTL_S), path=CALLBACK_PATH, httponly=True,
                            samesite="lax", secure=is_https(request.scope))
        return response

    async def callback(self, request):
        import asyncio

        from starlette.responses import HTMLResponse

        from rehab.app.gateway import client_address, is_https

        params = request.query_params
        client = client_address(request.scope)
        try:
            if params.get("error"):
                raise SsoError(f"The identity provider did not sign you in ({params.get('error')}).")
            pending = self.client.take_pending(params.get("state"), request.cookies.get(STATE_COOKIE))
            user = await asyncio.to_thread(self.client.finish, pending, params.get("code"))
        except SsoError as exc:
            lockout = self.gateway.throttle.failed(client)
            log.warning("single sign-on from %s failed: %s%s", client, exc,
                        f"; locked out for {lockout:.0f} s" if lockout else "")
            await asyncio.sleep(self.gateway.throttle.policy.failure_delay_s)
            response = self.gateway.login_response("/", str(exc), status=400)
            response.delete_cookie(STATE_COOKIE, path=CALLBACK_PATH)
            return response
        self.gateway.throttle.succeeded(client)
        # A page that moves on by itself rather than a redirect: the session cookie is SameSite=Strict, and a
        # browser does not send it on a redirect chain that began on the provider's site.
        target = html.escape(pending.next_path, quote=True)
        page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" '
                f'content="0;url={target}"><title>Signed in</title></head><body><p>Signed in as '
                f'{html.escape(user)}. <a href="{target}">Continue</a></p></body></html>')
        response = HTMLResponse(page, headers={"cache-control": "no-store", "x-frame-options": "DENY"})
        response.delete_cookie(STATE_COOKIE, path=CALLBACK_PATH, secure=is_https(request.scope))
        return await self.gateway.open_session(response, request, user, via=f"via single sign-on ({self.client.config.metadata_url})")
