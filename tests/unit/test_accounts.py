"""Accounts, password hashes, signed session tokens and the login throttle (rehab.accounts), with real files."""

from __future__ import annotations

import json
import os
import stat

import pytest

from rehab.accounts import (
    SHARED_ACCOUNT,
    AuthError,
    LoginThrottle,
    SessionSigner,
    ThrottlePolicy,
    add_user,
    hash_password,
    load_accounts,
    read_users,
    remove_user,
    verify_password,
)


def test_password_hashes_are_salted_and_verify():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", first) and verify_password("correct horse", second)
    assert not verify_password("correct horsE", first)
    assert not verify_password("x", "plain-text") and not verify_password("x", "scrypt$a$b$c$d$e")


def test_users_file_is_owner_only_whatever_the_umask(tmp_path):
    path = tmp_path / "conf" / "users.json"
    old = os.umask(0o022)
    try:
        assert add_user(path, "alice", "long enough 1") is True
        assert add_user(path, "alice", "long enough 2") is False  # a new password, same account
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    text = path.read_text()
    assert "long enough" not in text  # only hashes are stored
    accounts = load_accounts(path, None)
    assert accounts.check("alice", "long enough 2") and not accounts.check("alice", "long enough 1")
    assert not accounts.check("mallory", "long enough 2")
    remove_user(path, "alice")
    assert read_users(path) == {}
    with pytest.raises(AuthError, match="no account 'alice'"):
        remove_user(path, "alice")


@pytest.mark.parametrize("name, password, message", [
    ("al ice", "long enough", "user name 'al ice' is not allowed"),
    ("", "long enough", "is not allowed"),
    ("-x", "long enough", "is not allowed"),
    ("alice", "short", "at least 8 characters"),
    ("alice", " padded password ", "must not start or end with spaces"),
    ("alice", "bell\x07character", "control characters"),
])
def test_bad_accounts_are_refused(tmp_path, name, password, message):
    with pytest.raises(AuthError, match=message):
        add_user(tmp_path / "users.json", name, password)


def test_shared_password_is_one_account(tmp_path):
    accounts = load_accounts(tmp_path / "none.json", "from the environment")
    assert accounts.configured and accounts.check(SHARED_ACCOUNT, "from the environment")
    assert "from the environment" not in json.dumps(dict(accounts.hashes))
    add_user(tmp_path / "users.json", SHARED_ACCOUNT, "long enough")
    with pytest.raises(AuthError, match="use one or the other"):
        load_accounts(tmp_path / "users.json", "from the environment")
    assert not load_accounts(tmp_path / "none.json", None).configured


def test_session_tokens_expire_and_are_bound_to_the_server():
    signer = SessionSigner(lifetime_s=60.0, secret=b"a" * 32)
    token, session = signer.issue("alice", now_s=1000.0)
    assert signer.verify(token, now_s=1059.0) == session
    assert signer.verify(token, now_s=1060.0) is None  # expired
    other = SessionSigner(lifetime_s=60.0, secret=b"b" * 32)
    assert other.verify(token, now_s=1001.0) is None  # another server's secret
    body, mac = token.split(".")
    assert signer.verify(body[:-2] + "AA." + mac, now_s=1001.0) is None  # edited claims
    for junk in (None, "", ".", "a.b.c", "\u00e9.\u00e9"):
        assert signer.verify(junk, now_s=1001.0) is None
    assert signer.is_open(session.sid, now_s=1001.0) and not signer.is_open(session.sid, now_s=1060.0)
    signer.revoke(session.sid)
    assert signer.verify(token, now_s=1001.0) is None  # logged out
    assert not signer.is_open(session.sid, now_s=1001.0)


def test_throttle_locks_out_after_failures_and_doubles():
    throttle = LoginThrottle(ThrottlePolicy(max_failures=3, window_s=100.0, lockout_s=10.0, max_lockout_s=25.0))
    assert [throttle.failed("10.0.0.5", now_s=t) for t in (0.0, 1.0)] == [0.0, 0.0]
    assert throttle.failed("10.0.0.5", now_s=2.0) == 10.0
    assert throttle.locked_for_s("10.0.0.5", now_s=5.0) == pytest.approx(7.0)
    assert throttle.locked_for_s("10.0.0.6", now_s=5.0) == 0.0  # per client
    assert throttle.locked_for_s("10.0.0.5", now_s=12.0) == 0.0
    for t in (13.0, 14.0):
        throttle.failed("10.0.0.5", now_s=t)
    assert throttle.failed("10.0.0.5", now_s=15.0) == 20.0  # the second lock-out doubles
    for t in (40.0, 41.0):
        throttle.failed("10.0.0.5", now_s=t)
    assert throttle.failed("10.0.0.5", now_s=42.0) == 25.0  # capped
    throttle.succeeded("10.0.0.5")
    assert throttle.locked_for_s("10.0.0.5", now_s=43.0) == 0.0
    # Failures spread wider than the window are forgotten.
    spread = LoginThrottle(ThrottlePolicy(max_failures=3, window_s=10.0))
    assert [spread.failed("c", now_s=t) for t in (0.0, 20.0, 40.0, 60.0)] == [0.0] * 4
