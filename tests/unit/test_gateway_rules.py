"""The gateway's pure rules (rehab.app.gateway): redirect targets, cookie parsing, session bindings."""

from __future__ import annotations

from rehab.accounts import Accounts, hash_password
from rehab.app import gateway
from rehab.app_settings import AppSettings


def test_login_redirects_only_to_paths_on_this_server():
    assert gateway.safe_next("/history?x=1") == "/history?x=1"
    for bad in (None, "", "history", "//evil.example/x", "https://evil.example", "/\\evil.example", "/login",
                "/logout?next=/"):
        assert gateway.safe_next(bad) == "/", bad


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


def _body_messages(body: bytes, piece: int) -> list[dict]:
    chunks = [body[i:i + piece] for i in range(0, len(body), piece)]
    return [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]


def _read_upload(tmp_path, body: bytes, piece: int, limit: int):
    import asyncio

    from rehab.app.uploads import _FileWriter

    messages = iter(_body_messages(body, piece))

    async def receive() -> dict:
        return next(messages)

    writer = _FileWriter(tmp_path, limit)
    try:
        asyncio.run(writer.read(receive, b"xyz", limit + 1024))
    except BaseException:
        writer.discard()
        raise
    return writer


def test_the_upload_parser_takes_one_file_in_any_chunking_with_a_utf8_name(tmp_path):
    """The multipart body split 1 byte at a time (headers cut anywhere) and in big pieces: same file."""
    content = bytes(range(256)) * 40
    name = "Übung łokieć 膝.MP4"
    body = (b'--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="' + name.encode() + b'"\r\n'
            b"Content-Type: video/mp4\r\n\r\n" + content + b"\r\n--xyz--\r\n")
    for piece in (1, 7, 1 << 20):
        folder = tmp_path / str(piece)
        folder.mkdir()
        writer = _read_upload(folder, body, piece, limit=len(content))
        assert writer.name == name and writer.content_type == "video/mp4" and writer.size_bytes == len(content)
        assert writer.path.read_bytes() == content and writer.path.stat().st_mode & 0o777 == 0o600
        assert writer.path.suffix == ".mp4" and name not in str(writer.path)


def test_the_upload_parser_stops_at_the_limit_and_leaves_no_file(tmp_path):
    import pytest

    from rehab.app.uploads import UploadRefused

    body = (b'--xyz\r\nContent-Disposition: form-data; name="files"; filename="a.mp4"\r\n\r\n'
            + b"\0" * 5000 + b"\r\n--xyz--\r\n")
    with pytest.raises(UploadRefused) as refused:
        _read_upload(tmp_path, body, 512, limit=4096)
    assert refused.value.status == 413 and list(tmp_path.iterdir()) == []
    for bad in (b"not multipart at all", b'--xyz\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n--xyz--\r\n'):
        with pytest.raises(UploadRefused) as refused:
            _read_upload(tmp_path, bad, 512, limit=4096)
        assert refused.value.status == 400
    assert list(tmp_path.iterdir()) == []
