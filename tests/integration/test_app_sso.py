"""Single sign-on, end to end: a real OpenID Connect provider on loopback (oidc-provider-mock, Flask + Authlib)
and a real `rehab app` server with no local accounts, talked to over HTTP as a browser would.

The provider's login form is posted directly (it asks only for the user's subject); everything else is the real
authorization code flow: state cookie, PKCE, code redemption with the client secret, the ID token's signature,
issuer, audience and nonce checked by the server, then the server's own session cookie.
"""

from __future__ import annotations

import re
import urllib.parse

import pytest

from rehab.store import Store
from tests.app_server import http_request, start_server, stop_server
from tests.e2e.browser_support import free_port

oidc_provider_mock = pytest.importorskip("oidc_provider_mock")
# The provider is built on Authlib's older interfaces: its deprecation notes are not about this code.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:.*deprecated.*")]

USER_EMAIL = "dana@clinic.example"
CLIENT_ID, CLIENT_SECRET = "rehab-dashboard", "a-client-secret"


@pytest.fixture(scope="module")
def provider():
    with oidc_provider_mock.run_server_in_thread(require_nonce=True) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture
def server(tmp_path_factory, provider):
    """A fresh server per test: failed sign-ins lock the client (127.0.0.1) out, as they should."""
    port = free_port()
    env = {"REHAB_APP_SSO_METADATA_URL": f"{provider}/.well-known/openid-configuration",
           "REHAB_APP_SSO_CLIENT_ID": CLIENT_ID, "REHAB_APP_SSO_CLIENT_SECRET": CLIENT_SECRET,
           "REHAB_APP_SSO_REDIRECT_URI": f"http://127.0.0.1:{port}/auth/oidc/callback"}
    s = start_server(tmp_path_factory.mktemp("sso"), env, users=False, port=port)
    yield s
    stop_server(s)


def _cookie_value(headers: dict, name: str) -> str | None:
    match = re.search(rf"(?:^|,\s*){name}=([^;]*)", headers.get("set-cookie", ""))
    return match.group(1) if match else None


def _sign_in_at_provider(server, next_path: str = "/history", sub: str = USER_EMAIL) -> tuple[str, str]:
    """Start a sign-in at the dashboard and log in at the provider: (the callback path, the state cookie)."""
    import requests

    status, headers, _ = http_request(server, "GET", f"/auth/oidc?next={urllib.parse.quote(next_path)}")
    assert status == 303, (status, headers)
    state_cookie = _cookie_value(headers, "rehab_sso_state")
    assert state_cookie and "HttpOnly" in headers["set-cookie"] and "SameSite=lax" in headers["set-cookie"]
    authorize = headers["location"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(authorize).query)
    assert query["client_id"] == [CLIENT_ID] and query["code_challenge_method"] == ["S256"]
    assert query["state"] == [state_cookie] and query["nonce"][0]
    reply = requests.post(authorize, data={"sub": sub}, allow_redirects=False, timeout=30)
    assert reply.status_code == 302, reply.text[:500]
    back = urllib.parse.urlsplit(reply.headers["location"])
    assert back.path == "/auth/oidc/callback", reply.headers["location"]
    return f"{back.path}?{back.query}", state_cookie


def test_a_user_signs_in_through_the_identity_provider(server):
    # Without a session the page goes to the login page, which offers single sign-on and no password form.
    status, headers, _ = http_request(server, "GET", "/history")
    assert status == 303 and headers["location"].startswith("/login")
    status, _, body = http_request(server, "GET", "/login?next=%2Fhistory")
    assert status == 200 and b'href="/auth/oidc?next=%2Fhistory"' in body and b'type="password"' not in body

    callback, state = _sign_in_at_provider(server)
    status, headers, body = http_request(server, "GET", callback, headers={"Cookie": f"rehab_sso_state={state}"})
    assert status == 200, body[:500]
    session = _cookie_value(headers, "rehab_session")
    assert session and "SameSite=strict" in headers["set-cookie"] and "HttpOnly" in headers["set-cookie"]
    assert b'http-equiv="refresh" content="0;url=/history"' in body and USER_EMAIL.encode() in body

    status, _, _ = http_request(server, "GET", "/history", headers={"Cookie": f"rehab_session={session}"})
    assert status == 200
    status, _, _ = http_request(server, "GET", "/_stcore/host-config", headers={"Cookie": f"rehab_session={session}"})
    assert status == 200
    with Store(server.data_dir) as store:
        logins = [row for row in store.audit_log() if row["action"] == "login"]
    assert logins and logins[-1]["user"] == USER_EMAIL and "single sign-on" in logins[-1]["detail"]

    # The same callback again (a replayed code and state) is refused and opens no session.
    status, headers, body = http_request(server, "GET", callback, headers={"Cookie": f"rehab_sso_state={state}"})
    assert status == 400 and _cookie_value(headers, "rehab_session") is None
    assert b"expired or was already used" in body


def test_bad_callbacks_open_no_session(server):
    callback, state = _sign_in_at_provider(server)
    # Another browser (no state cookie, or another one) cannot finish this sign-in: login CSRF.
    for cookie in ({}, {"Cookie": "rehab_sso_state=someone-elses"}):
        status, headers, body = http_request(server, "GET", callback, headers=cookie)
        assert status == 400 and _cookie_value(headers, "rehab_session") is None
        assert b"not started from this browser" in body
    # A made-up code with a genuine state: the provider refuses to redeem it.
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(callback).query)
    forged = f"/auth/oidc/callback?code=made-up&state={query['state'][0]}"
    status, headers, body = http_request(server, "GET", forged, headers={"Cookie": f"rehab_sso_state={state}"})
    assert status == 400 and _cookie_value(headers, "rehab_session") is None
    assert b"refused the login code" in body
    # The provider's own refusal (the user pressed Deny) is said on the login page.
    status, _, body = http_request(server, "GET", "/auth/oidc/callback?error=access_denied&state=x")
    assert status == 400 and b"access_denied" in body
    # Five failures: this client may not start another sign-in for a while (the password form's lock-out).
    http_request(server, "GET", "/auth/oidc/callback?code=x&state=y")
    status, headers, body = http_request(server, "GET", "/auth/oidc?next=%2F")
    assert status == 429 and b"Too many failed attempts" in body and "location" not in headers


def test_without_local_accounts_the_password_form_is_refused(server):
    status, headers, body = http_request(server, "POST", "/login", b"user=alice&password=x",
                                         {"Content-Type": "application/x-www-form-urlencoded",
                                          "Origin": f"http://127.0.0.1:{server.port}"})
    assert status == 403 and b"single sign-on" in body and _cookie_value(headers, "rehab_session") is None


@pytest.mark.slow
def test_chromium_signs_in_through_the_provider_and_reaches_the_dashboard(server, tmp_path):
    """The cross-site round trip in a real browser (provider on localhost, dashboard on 127.0.0.1: two sites), so
    the SameSite=Strict session cookie must reach the dashboard after the provider's redirect."""
    import os
    from pathlib import Path

    from tests.e2e import browser_support as bs

    if bs.chromium_path() is None:
        if os.environ.get("REHAB_REQUIRE_DATA") == "1":
            pytest.fail("Debian chromium is not installed; .ci/run installs it")
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("REHAB_E2E_ARTIFACTS") or bs.REPO_ROOT / "out" / "e2e")
    shots.mkdir(parents=True, exist_ok=True)
    timeout_ms = 90_000
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=bs.chromium_path(), headless=True, args=list(bs.CHROMIUM_ARGS))
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        try:
            page.goto(f"http://127.0.0.1:{server.port}/history", timeout=timeout_ms)
            page.wait_for_url("**/login?next=%2Fhistory", timeout=timeout_ms)
            page.screenshot(path=str(shots / "sso_login_page.png"))
            page.get_by_role("link", name="Sign in with your organisation's account").click()
            page.wait_for_url("http://localhost:*/oauth2/authorize?**", timeout=timeout_ms)
            page.locator("input[name=sub]").fill(USER_EMAIL)
            page.locator("form button[type=submit], form input[type=submit]").first.click()
            page.get_by_role("heading", name="History").wait_for(timeout=timeout_ms)
            page.get_by_text(f"Logged in as {USER_EMAIL}").wait_for(timeout=timeout_ms)
            assert page.url == f"http://127.0.0.1:{server.port}/history"
            page.screenshot(path=str(shots / "sso_signed_in.png"))
        except Exception:
            page.screenshot(path=str(shots / "sso_failure.png"))
            raise
        finally:
            browser.close()
