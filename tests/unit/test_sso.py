"""The single sign-on client's checks: the ID token's signature, issuer, audience, expiry and nonce (against keys
served over real HTTP on loopback), the pending-login bookkeeping, and the settings that configure it."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from rehab.app import sso
from rehab.app_settings import AppSettings

ISSUER, CLIENT = "https://idp.clinic.example", "rehab-dashboard"


@pytest.fixture(scope="module")
def provider_keys():
    """The provider's key, its public JWKS served at http://127.0.0.1:PORT/jwks, and the metadata naming it."""
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    jwks = json.dumps(KeySet([key]).as_dict(private=False)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield key, f"http://127.0.0.1:{server.server_address[1]}/jwks"
    server.shutdown()


def _client(jwks_uri: str) -> sso.OidcClient:
    client = sso.OidcClient(sso.SsoConfig("https://idp.clinic.example/.well-known/openid-configuration", CLIENT,
                                          "secret", "https://rehab.clinic.example/auth/oidc/callback"))
    # The metadata as discovery would have read it (discovery itself runs in tests/integration/test_app_sso.py).
    client._metadata = {"issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/authorize",
                        "token_endpoint": f"{ISSUER}/token", "jwks_uri": jwks_uri}
    client._fetched_s = time.monotonic()
    return client


def _token(key, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": CLIENT, "sub": "42", "email": "dana@clinic.example", "iat": now,
            "exp": now + 300, "nonce": "n-1", **claims}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, {k: v for k, v in body.items() if v is not None}, key)


def test_a_genuine_id_token_verifies(provider_keys):
    key, jwks = provider_keys
    assert _client(jwks)._verify(_token(key), "n-1")["email"] == "dana@clinic.example"


@pytest.mark.parametrize("claims", [{"iss": "https://elsewhere.example"}, {"aud": "another-app"},
                                    {"nonce": "n-2"}, {"nonce": None}, {"exp": int(time.time()) - 3600}],
                         ids=["issuer", "audience", "nonce", "no-nonce", "expired"])
def test_a_token_for_someone_else_or_too_old_is_refused(provider_keys, claims):
    key, jwks = provider_keys
    with pytest.raises(sso.SsoError, match="did not verify"):
        _client(jwks)._verify(_token(key, **claims), "n-1")


def test_a_token_signed_with_another_key_is_refused(provider_keys):
    _, jwks = provider_keys
    forger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with pytest.raises(sso.SsoError, match="did not verify"):
        _client(jwks)._verify(_token(forger), "n-1")


def test_pending_logins_are_single_use_tied_to_the_browser_and_bounded(provider_keys):
    client = _client(provider_keys[1])
    url, state = client.start("/history")
    assert url.startswith(f"{ISSUER}/authorize?") and f"state={state}" in url and "code_challenge=" in url
    with pytest.raises(sso.SsoError, match="not started from this browser"):
        client.take_pending(state, "another-browser")
    assert client.take_pending(state, state).next_path == "/history"
    with pytest.raises(sso.SsoError, match="already used"):
        client.take_pending(state, state)
    _, old = client.start("/", now_s=time.time() - sso.PENDING_TTL_S - 1)
    with pytest.raises(sso.SsoError, match="expired"):
        client.take_pending(old, old)
    for _ in range(sso.MAX_PENDING + 50):
        client.start("/")
    assert client.pending_count == sso.MAX_PENDING


GOOD = {"sso_metadata_url": "https://idp.clinic.example/.well-known/openid-configuration",
        "sso_client_id": CLIENT, "sso_client_secret": "s",
        "sso_redirect_uri": "https://rehab.clinic.example/auth/oidc/callback"}


def test_settings_take_single_sign_on_from_the_environment_and_hand_it_on():
    env = {"REHAB_APP_SSO_METADATA_URL": GOOD["sso_metadata_url"], "REHAB_APP_SSO_CLIENT_ID": CLIENT,
           "REHAB_APP_SSO_CLIENT_SECRET": "s", "REHAB_APP_SSO_REDIRECT_URI": GOOD["sso_redirect_uri"]}
    settings = AppSettings().with_env(env)
    assert settings.sso == sso.SsoConfig(GOOD["sso_metadata_url"], CLIENT, "s", GOOD["sso_redirect_uri"], "email")
    assert settings.password_required
    assert AppSettings().with_env(settings.to_env()).sso == settings.sso
    assert AppSettings().sso is None and "REHAB_APP_SSO_USER_CLAIM" not in AppSettings().to_env()


@pytest.mark.parametrize("change, message", [
    ({"sso_client_secret": None}, "missing sso_client_secret"),
    ({"sso_metadata_url": "http://idp.clinic.example/x"}, "https://"),
    ({"sso_redirect_uri": "https://rehab.clinic.example/oauth2callback"}, "must end in /auth/oidc/callback"),
    ({"sso_client_id": "  "}, "non-blank"),
    ({"sso_user_claim": ""}, "sso_user_claim"),
])
def test_bad_single_sign_on_settings_are_refused_by_name(change, message):
    with pytest.raises(ValueError, match=message):
        AppSettings(**{**GOOD, **change})


def test_plain_http_is_allowed_for_a_provider_on_this_machine_only():
    AppSettings(**{**GOOD, "sso_metadata_url": "http://localhost:8080/.well-known/openid-configuration"})
