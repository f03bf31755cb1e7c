"""The gateway's pure rules (rehab.app.gateway): redirect targets, cookie parsing, session bindings."""

from __future__ import annotations

from rehab.accounts import Accounts, hash_password
from rehab.app import gateway
from rehab.app_settings import AppSettings


def test_login_redirects_only_to_paths_on_this_server():
    assert gateway._safe_next("/history?x=1") == "/history?x=1"
    for bad in (None, "", "history", "//evil.example/x", "https://evil.example", "/\\evil.example", "/login",
                "/logout?next=/"):
        assert gateway._safe_next(bad) == "/", bad


def test_cookie_parsing_tolerates_junk():
    assert gateway._cookie("a=1; rehab_session=tok.en; b=2", "rehab_session") == "tok.en"
    for junk in (None, "", "rehab_session", '"', "a=\x00"):
        assert gateway._cookie(junk, "rehab_session") is None


def test_resumed_session_is_the_third_subprotocol_entry():
    scope = {"headers": [(b"sec-websocket-protocol", b"streamlit, xsrf-token, 1234-abcd")]}
    assert gateway._resumed_session(scope) == "1234-abcd"
    assert gateway._resumed_session({"headers": [(b"sec-websocket-protocol", b"streamlit, xsrf")]}) is None
    assert gateway._resumed_session({"headers": []}) is None


def test_bindings_of_ended_logins_are_dropped(tmp_path):
    gw = gateway.Gateway(AppSettings(data_dir=tmp_path), Accounts({"ann": hash_password("long enough")}))
    _, first = gw.signer.issue("ann")
    _, second = gw.signer.issue("ann")
    gw.bind_session("tab-1", first)
    gw.bind_session("tab-2", second)
    assert gw.owner_of("tab-1") == first.sid
    gw.signer.revoke(first.sid)
    gw.bind_session("tab-3", second)
    assert gw.owner_of("tab-1") is None and gw.owner_of("tab-2") == second.sid == gw.owner_of("tab-3")


def test_login_page_escapes_what_it_shows():
    page = gateway.login_page('/x?"><script>', "<b>bad</b>", user='"><img src=x>')
    assert "<script>" not in page and "<b>bad</b>" not in page and "<img src=x>" not in page


def test_uploaded_file_names_lose_folders_and_control_characters():
    from rehab.app.uploads import MAX_NAME_CHARS, clean_name

    assert clean_name("knee left.mp4") == "knee left.mp4"
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name("C:\\clips\\a\x00b\x1f.mov") == "ab.mov"
    assert clean_name("") == clean_name("/") == "upload"
    assert len(clean_name("x" * 1000 + ".mp4")) == MAX_NAME_CHARS and clean_name("x" * 1000 + ".mp4").endswith(".mp4")
