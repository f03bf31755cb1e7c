"""The login in front of the dashboard: ASGI middleware and login/logout routes on Streamlit's Starlette server.

``rehab app`` serves ``rehab/app/server.py``, an ``st.App`` built with :func:`Gateway.middleware` and
:func:`Gateway.routes`. Every HTTP request and websocket passes :class:`AuthMiddleware` before Streamlit sees
it: the page, ``/_stcore/*`` (all but the health check), ``/media/*``, uploads, components and static files
need a valid session cookie; without one a page request is sent to ``/login`` and anything else gets 401
(a websocket is closed before it is accepted), without reading the request body. With a cookie:

- a media file (``/media/<id>``) is served only to the login whose Streamlit session made it, while that
  session is connected (a copied link is useless in another browser or after the tab is closed);
- an upload goes only to a Streamlit session of the same login; one whose Content-Length is over the limit
  is refused before a byte of it is read, and the body of any other is streamed to disk by
  :mod:`rehab.app.uploads` (not kept in memory as Streamlit's own route would), counting the bytes received
  and refused as soon as they pass the limit;
- a websocket may resume only a Streamlit session of the same login.

With single sign-on configured (rehab.app.sso), ``/auth/oidc`` and its callback are public too: they run the
identity provider's login and end in the same session cookie as the password form.

The page script binds its Streamlit session to the login it runs for (:meth:`Gateway.bind_session`), which is
what the media, upload and resume checks look up. State lives in this process only: a restart logs everyone
out, and a cookie signed by another server (another secret) is never valid here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from streamlit.runtime.scriptrunner import get_script_run_ctx

from rehab.accounts import SHARED_ACCOUNT, Accounts, LoginSession, LoginThrottle, SessionSigner, ThrottlePolicy
from rehab.app.file_links import FILES_PREFIX, FileLinks
from rehab.app.login_page import LOGIN_PATH, login_page
from rehab.app.sso import CALLBACK_PATH, START_PATH, OidcClient, SsoRoutes
from rehab.app.uploads import UPLOAD_FRAMING_BYTES, UPLOADS_DIR, ClientGone, UploadRefused, UploadSpool
from rehab.app_settings import AppSettings

log = logging.getLogger(__name__)

COOKIE_NAME = "rehab_session"
LOGOUT_PATH = "/logout"
# Load balancers and `rehab app`'s own start-up check poll this without a login; it says only "ok".
PUBLIC_PATHS = frozenset({"/_stcore/health", LOGIN_PATH, START_PATH, CALLBACK_PATH})
# Requests for these are API calls, not pages: refused with 401 rather than sent to the login page.
API_PREFIXES = ("/_stcore/", "/media/", FILES_PREFIX, "/component/", "/static/", "/app/static/", "/auth/", "/oauth2callback")
MEDIA_PREFIX = "/media/"
UPLOAD_PREFIX = "/_stcore/upload_file/"
# The login form is two short fields; a longer body is not a login.
LOGIN_BODY_MAX_BYTES = 4096
# Websocket close code for a policy violation; uvicorn answers the handshake with 403.
WS_POLICY_VIOLATION = 1008

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

_active: Gateway | None = None


def active() -> Gateway | None:
    """The gateway of the server this process runs, or None (the page runs without ``rehab app``)."""
    return _active


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


class Gateway:
    """Accounts, login sessions, throttle and the Streamlit-session bindings of one server process."""

    def __init__(self, settings: AppSettings, accounts: Accounts, policy: ThrottlePolicy | None = None,
                 audit: Callable[..., None] | None = None) -> None:
        self.settings = settings
        self.accounts = accounts
        self.signer = SessionSigner(settings.session_hours * 3600.0)
        self.throttle = LoginThrottle(policy or ThrottlePolicy())
        self._audit = audit
        from rehab.app.common import TEMP_DIR

        self.sso = SsoRoutes(self, OidcClient(settings.sso)) if settings.sso else None
        self.files = FileLinks(self)
        self.uploads = UploadSpool(Path(settings.data_dir) / TEMP_DIR / UPLOADS_DIR, settings.max_upload_bytes)
        # Streamlit session id -> login session id; written by the page script, read by the middleware.
        self._bindings: dict[str, str] = {}
        # Media file id -> the Streamlit sessions that made it.
        self._media_makers: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether a login is required (some account, or single sign-on, is configured)."""
        return self.accounts.configured or self.sso is not None

    def install(self) -> Gateway:
        """Make this the process's gateway, found by the page script through :func:`active`."""
        global _active
        _active = self
        return self

    def middleware(self) -> list:
        from starlette.middleware import Middleware

        return [Middleware(AuthMiddleware, gateway=self)]

    def routes(self) -> list:
        from starlette.routing import Route

        routes = [Route(LOGIN_PATH, self._login, methods=["GET", "POST"]),
                  Route(LOGOUT_PATH, self._logout, methods=["GET", "POST"]),
                  Route(FILES_PREFIX + "{token}", self.files.serve, methods=["GET", "HEAD"])]
        if self.sso is not None:
            routes += [Route(START_PATH, self.sso.start, methods=["GET"]),
                       Route(CALLBACK_PATH, self.sso.callback, methods=["GET"])]
        return routes

    # ---------------------------------------------------------------------------------------------
    # sessions

    def session_for(self, cookie_header: str | None) -> LoginSession | None:
        return self.signer.verify(_cookie(cookie_header, COOKIE_NAME))

    def session_from_token(self, token: str | None) -> LoginSession | None:
        return self.signer.verify(token)

    def bind_session(self, streamlit_session_id: str, login: LoginSession) -> None:
        self.watch_media()
        with self._lock:
            new = streamlit_session_id not in self._bindings
            self._bindings[streamlit_session_id] = login.sid
        if new:
            self._forget_closed_sessions()

    def _forget_closed_sessions(self) -> None:
        """Drop the bindings of logins that have ended (logout, expiry), so that they do not pile up.

        Bindings of a live login stay even while its tab is disconnected: dropping one would let another
        login resume that Streamlit session.
        """
        with self._lock:
            for session in [s for s, sid in self._bindings.items() if not self.signer.is_open(sid)]:
                del self._bindings[session]
            for file_id in list(self._media_makers):
                self._media_makers[file_id] &= self._bindings.keys()
                if not self._media_makers[file_id]:
                    del self._media_makers[file_id]

    def owner_of(self, streamlit_session_id: str) -> str | None:
        with self._lock:
            return self._bindings.get(streamlit_session_id)

    def session_connected(self, streamlit_session_id: str, login: LoginSession) -> bool:
        """Whether that Streamlit session belongs to ``login`` and its browser tab is still connected."""
        from streamlit.runtime import Runtime

        return (self.owner_of(streamlit_session_id) == login.sid and Runtime.exists()
                and Runtime.instance().get_client(streamlit_session_id) is not None)

    def _sessions_of(self, sid: str) -> list[str]:
        with self._lock:
            return [s for s, owner in self._bindings.items() if owner == sid]

    def media_allowed(self, file_name: str, login: LoginSession) -> bool:
        """Whether ``file_name`` (``<id>.<ext>``) was made by a connected Streamlit session of ``login``.

        The makers are recorded as Streamlit creates each file (:meth:`watch_media`): its own per-session
        table is emptied at the start of every script run, so a download clicked during a rerun would find
        no owner there. Should Streamlit change so that neither source names a maker, media are refused.
        """
        from streamlit.runtime import Runtime

        if not Runtime.exists():
            return False
        runtime = Runtime.instance()
        file_id = file_name.split(".", 1)[0]
        with self._lock:
            makers = set(self._media_makers.get(file_id, ()))
        table = getattr(runtime.media_file_mgr, "_files_by_session_and_coord", None)
        lock = getattr(runtime.media_file_mgr, "_lock", None)
        if table is not None and lock is not None:
            with lock:
                makers.update(session for session, files in table.items() if file_id in files.values())
        return any(self.session_connected(s, login) for s in makers)

    def watch_media(self) -> None:
        """Record which Streamlit session makes each media file (videos, downloads); idempotent.

        Called from the page script before it renders anything, so no file of a session escapes it.
        """
        from streamlit.runtime import Runtime

        if not Runtime.exists():
            return
        manager = Runtime.instance().media_file_mgr
        if getattr(manager, "_rehab_watched", False):
            return
        original = manager.add

        def add(*args, **kwargs):
            url = original(*args, **kwargs)
            ctx = get_script_run_ctx()
            if ctx is not None:
                file_id = str(url).rsplit("/", 1)[-1].split(".", 1)[0]
                with self._lock:
                    self._media_makers.setdefault(file_id, set()).add(ctx.session_id)
            return url

        manager.add = add
        manager._rehab_watched = True

    def _close_streamlit_sessions(self, sid: str) -> None:
        from streamlit.runtime import Runtime

        sessions = self._sessions_of(sid)
        with self._lock:
            for s in sessions:
                self._bindings.pop(s, None)
        if Runtime.exists():
            for s in sessions:
                Runtime.instance().close_session(s)

    def audit(self, user: str, action: str, detail: str = "") -> None:
        if self._audit is not None:
            try:
                self._audit(user, action, detail=detail)
            except Exception as err:  # the trail must not stop a login; the failure is logged
                log.error("could not write the audit entry %s/%s: %s", user, action, err)

    # ---------------------------------------------------------------------------------------------
    # routes

    async def _login(self, request):
        from starlette.responses import RedirectResponse

        target = safe_next(request.query_params.get("next"))
        if request.method == "GET":
            return self.login_response(target, user=self._only_account())
        if not self.accounts.configured:
            return self.login_response(target, "Use single sign-on: this server has no local accounts.", status=403)
        if not _same_origin(request.scope):
            # Another site's form posting here (login CSRF: the browser would end up in the attacker's account).
            return self.login_response(target, "Log in from this page.", status=403)
        client = client_address(request.scope)
        locked = self.locked_out(client, target)
        if locked is not None:
            return locked
        body = await _read_limited(request, LOGIN_BODY_MAX_BYTES)
        if body is None:
            return self.login_response(target, "The login form was too large.", status=413)
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
        user = (form.get("user") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        # scrypt takes tens of milliseconds: off the event loop, so other browsers stay responsive.
        ok = bool(user) and bool(password) and await asyncio.to_thread(self.accounts.check, user, password)
        if not ok:
            lockout = self.throttle.failed(client)
            log.warning("failed login for %r from %s%s", user[:64], client,
                        f"; locked out for {lockout:.0f} s" if lockout else "")
            await asyncio.sleep(self.throttle.policy.failure_delay_s)
            message = (f"Too many failed attempts. Try again in {lockout:.0f} s." if lockout
                       else "Wrong user name or password.")
            return self.login_response(target, message, user, status=429 if lockout else 401)
        self.throttle.succeeded(client)
        return await self.open_session(RedirectResponse(target, status_code=303, headers=_NO_STORE), request, user)

    def locked_out(self, client: str, target: str):
        """The login page with 429 while ``client`` is locked out after failed logins (password or SSO), else None."""
        locked = self.throttle.locked_for_s(client)
        if locked <= 0:
            return None
        log.warning("login from %s refused: locked out for %.0f s more", client, locked)
        response = self.login_response(target, f"Too many failed attempts. Try again in {locked:.0f} s.", status=429)
        response.headers["Retry-After"] = str(int(locked) + 1)
        return response

    def login_response(self, target: str, message: str | None = None, user: str = "", status: int = 200):
        from starlette.responses import HTMLResponse

        return HTMLResponse(login_page(target, message, user, local=self.accounts.configured,
                                       sso=self.sso is not None), status_code=status, headers=_LOGIN_HEADERS)

    async def open_session(self, response, request, user: str, via: str = ""):
        """Log ``user`` in: a new session, its cookie on ``response``, a line in the log and the audit table."""
        client = client_address(request.scope)
        token, _ = self.signer.issue(user)
        log.info("%s logged in from %s%s", user, client, f" {via}" if via else "")
        await asyncio.to_thread(self.audit, user, "login", f"from {client}{f' {via}' if via else ''}")
        response.set_cookie(COOKIE_NAME, token, max_age=int(self.signer.lifetime_s), path="/", httponly=True,
                            samesite="strict", secure=is_https(request.scope))
        return response

    def _only_account(self) -> str:
        """The one-user set-up's account name, filled in for the user; "" when there are several accounts."""
        names = list(self.accounts.hashes)
        return names[0] if names == [SHARED_ACCOUNT] else ""

    async def _logout(self, request):
        from starlette.responses import RedirectResponse

        session = self.session_for(request.headers.get("cookie"))
        if session is not None:
            self.signer.revoke(session.sid)
            self._close_streamlit_sessions(session.sid)
            log.info("%s logged out", session.user)
            await asyncio.to_thread(self.audit, session.user, "logout")
        response = RedirectResponse(LOGIN_PATH, status_code=303, headers=_NO_STORE)
        response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict",
                               secure=is_https(request.scope))
        return response


class AuthMiddleware:
    """Pure ASGI (no body buffering): every request passes here before Streamlit's own handlers."""

    def __init__(self, app, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        is_upload = kind == "http" and scope.get("method") == "PUT" and path.startswith(UPLOAD_PREFIX)
        if not self.gateway.enabled or (kind == "http" and path in PUBLIC_PATHS):
            # No accounts (a localhost-only dashboard): no login to check, but uploads still go to disk.
            await (self._upload(scope, receive, send, path) if is_upload else self.app(scope, receive, send))
            return
        login = self.gateway.session_for(_header(scope, b"cookie"))
        refusal = self._check(scope, path, login)
        if refusal is None:
            await (self._upload(scope, receive, send, path) if is_upload else self.app(scope, receive, send))
            return
        log.info("refused %s %s from %s: %s", scope.get("method", "WS"), path, client_address(scope), refusal.reason)
        if kind == "websocket":
            await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION})
            return
        if refusal.status == 401 and scope.get("method") in ("GET", "HEAD") and not path.startswith(API_PREFIXES):
            await _respond(send, 303, b"", [(b"location", _login_url(scope).encode())])
            return
        await _respond(send, refusal.status, refusal.reason.encode() + b"\n", [(b"content-type", b"text/plain")])

    def _check(self, scope: Scope, path: str, login: LoginSession | None) -> Refusal | None:
        if login is None:
            return Refusal(401, "login required")
        if scope["type"] == "websocket":
            resumed = _resumed_session(scope)
            if resumed and self.gateway.owner_of(resumed) not in (None, login.sid):
                return Refusal(403, "that session belongs to another login")
            return None
        if path.startswith(MEDIA_PREFIX) and not self.gateway.media_allowed(path[len(MEDIA_PREFIX):], login):
            return Refusal(404, "no such file for this session")
        if path.startswith(FILES_PREFIX) and not self.gateway.files.allowed(path[len(FILES_PREFIX):], login):
            return Refusal(404, "no such file for this session")
        if path.startswith(UPLOAD_PREFIX):
            session_id = path[len(UPLOAD_PREFIX):].split("/", 1)[0]
            if self.gateway.owner_of(session_id) != login.sid:
                return Refusal(403, "upload to a session of another login")
        return None

    async def _upload(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """Answer an upload (PUT) in Streamlit's place, its body streamed to disk (rehab.app.uploads)."""
        session_id, _, file_id = path[len(UPLOAD_PREFIX):].partition("/")
        settings = self.gateway.settings
        length = _header(scope, b"content-length")
        try:
            if not session_id or not file_id or "/" in file_id:
                raise UploadRefused(404, "no such upload address")
            # Declared too large (or nonsense): refused before a byte of the body is read. Without the header
            # (chunked), the bytes are counted as they arrive.
            if length is not None and not length.isdigit():
                raise UploadRefused(400, "invalid Content-Length")
            if length is not None and int(length) > settings.max_upload_bytes + UPLOAD_FRAMING_BYTES:
                raise UploadRefused(413, f"upload larger than the limit of {settings.max_upload_mb} MB")
            await self.gateway.uploads.receive(scope, receive, session_id, file_id)
        except UploadRefused as refused:
            log.info("refused upload to %s from %s: %s", path, client_address(scope), refused.reason)
            await _respond(send, refused.status, refused.reason.encode() + b"\n", [(b"content-type", b"text/plain")])
            return
        except ClientGone:
            log.info("upload to %s from %s ended before it was complete; nothing kept", path, client_address(scope))
            return
        await _respond(send, 204, b"", [], close=False)


_NO_STORE = {"cache-control": "no-store"}
# The login form is never shown inside another site's frame (clickjacking).
_LOGIN_HEADERS = {**_NO_STORE, "x-frame-options": "DENY", "content-security-policy": "frame-ancestors 'none'"}


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]],
                   close: bool = True) -> None:
    # "connection: close": the body the client may still be sending is not read, and the connection ends.
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode()),
                            *([(b"connection", b"close")] if close else []), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


async def _read_limited(request, limit: int) -> bytes | None:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            return None
    return data


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _cookie(header: str | None, name: str) -> str | None:
    if not header:
        return None
    jar = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # http.cookies raises CookieError on junk; a junk cookie is no session
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def is_https(scope: Scope) -> bool:
    # A TLS-terminating proxy in front (README) says so in X-Forwarded-Proto; the flag only makes the cookie
    # stricter, so trusting it costs nothing.
    return scope.get("scheme") in ("https", "wss") or (_header(scope, b"x-forwarded-proto") or "") == "https"


def _same_origin(scope: Scope) -> bool:
    """No Origin header (an old browser, a script) or one naming this very host."""
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    return urllib.parse.urlsplit(origin).netloc == (_header(scope, b"host") or "")


def _resumed_session(scope: Scope) -> str | None:
    """The Streamlit session id a reconnecting websocket asks to resume (third subprotocol entry)."""
    entries = [e.strip() for e in (_header(scope, b"sec-websocket-protocol") or "").split(",")]
    return entries[2] if len(entries) > 2 and entries[2] else None


def _login_url(scope: Scope) -> str:
    target = scope.get("path", "/")
    query = scope.get("query_string", b"").decode("latin-1")
    if query:
        target += "?" + query
    return f"{LOGIN_PATH}?{urllib.parse.urlencode({'next': target})}"


def safe_next(target: str | None) -> str:
    """Only a path on this server: never another site (//host, scheme:...), never back to the login."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if urllib.parse.urlsplit(target).path in (LOGIN_PATH, LOGOUT_PATH):
        return "/"
    return target


def build_gateway(settings: AppSettings) -> Gateway:
    """The gateway for ``settings``: accounts loaded (AuthError naming the users file when unusable)."""
    from rehab.accounts import load_accounts

    accounts = load_accounts(settings.users_path, settings.password)

    def audit(user: str, action: str, detail: str = "") -> None:
        from rehab.store import Store

        with Store(settings.data_dir) as store:
            store.audit(user, action, detail=detail)

    return Gateway(settings, accounts, audit=audit)

