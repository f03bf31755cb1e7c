"""Chromium through the real login page of a real `rehab app` server on loopback: upload, export, media links.

No camera here, so no network namespace is needed: the video page and the history page run over plain
loopback HTTP. The browser logs in through the server's own form (a wrong password first), uploads a real clip
under a formula-like pseudonym, downloads the CSV export, and then checks from outside the browser what an
attacker would try: the annotated video's media link without the cookie and with another login's cookie.
Every file the server wrote must be owner-only although the server starts under umask 022.
"""

from __future__ import annotations

import csv
import http.client
import io
import os
import urllib.parse
from pathlib import Path

import pytest

from rehab.store import Store
from tests.e2e import browser_support as bs

CLIP = "videos/pose2sim_static_cam01.mp4"  # 11 frames: analysed in seconds with the tiny model
INJECTED_PSEUDONYM = '=HYPERLINK("http://example.invalid","open")'
OTHER_USER, OTHER_PASSWORD = "other-therapist", "other-password-456"
TIMEOUT_S = 90.0
REQUIRED = os.environ.get("REHAB_REQUIRE_DATA") == "1"


def _status(port: int, path: str, cookie: str | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        return conn.getresponse().status
    finally:
        conn.close()


def _cookie_of(port: int, user: str, password: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/login", urllib.parse.urlencode({"user": user, "password": password}),
                     {"Content-Type": "application/x-www-form-urlencoded"})
        reply = conn.getresponse()
        assert reply.status == 303
        return reply.getheader("set-cookie").split(";", 1)[0]
    finally:
        conn.close()


@pytest.mark.slow
def test_chromium_logs_in_uploads_exports_and_media_stay_private(tmp_path, shared_dir, require_data):
    clip = require_data(shared_dir / CLIP)
    if bs.chromium_path() is None:
        if REQUIRED:
            pytest.fail("Debian chromium is not installed; .ci/run installs it")
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    data_dir, port = tmp_path / "data", bs.free_port()
    old_umask = os.umask(bs.PERMISSIVE_UMASK)
    try:
        server = bs.start_server(port, data_dir, bs.write_tiny_pose_model(tmp_path / "tiny.onnx"),
                                 tmp_path / "server.log", accounts={bs.TEST_USER: bs.TEST_PASSWORD,
                                                                    OTHER_USER: OTHER_PASSWORD})
    finally:
        os.umask(old_umask)
    shots = Path(os.environ.get("REHAB_E2E_ARTIFACTS") or bs.REPO_ROOT / "out" / "e2e")
    shots.mkdir(parents=True, exist_ok=True)
    try:
        bs.wait_healthy(port, server, 60.0)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=bs.chromium_path(), headless=True,
                                         args=list(bs.CHROMIUM_ARGS))
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                # A wrong password first: the form says so and stays.
                page.goto(f"http://127.0.0.1:{port}/video", timeout=TIMEOUT_S * 1000)
                page.wait_for_url("**/login?next=%2Fvideo")
                page.fill("#user", bs.TEST_USER)
                page.fill("#password", "not the password")
                page.get_by_role("button", name="Log in").click()
                page.get_by_text("Wrong user name or password.").wait_for(timeout=TIMEOUT_S * 1000)
                page.screenshot(path=str(shots / "login_failed.png"))
                bs.log_in(page, port, "/video", timeout_s=TIMEOUT_S)
                page.get_by_role("heading", name="Video analysis").wait_for(timeout=TIMEOUT_S * 1000)
                page.get_by_text(f"Logged in as {bs.TEST_USER}").wait_for(timeout=TIMEOUT_S * 1000)

                name = page.get_by_label("New pseudonym")
                name.fill(INJECTED_PSEUDONYM)
                name.press("Enter")
                page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(clip))
                analyse = page.get_by_role("button", name="Analyse")
                expect(analyse).to_be_enabled(timeout=TIMEOUT_S * 1000)
                analyse.click()
                page.get_by_text("Added to the history of").wait_for(timeout=TIMEOUT_S * 1000)
                page.screenshot(path=str(shots / "login_upload_done.png"))
                # The server streamed the browser's upload to one owner-only file, byte for byte (not memory).
                [spooled] = list((data_dir / "tmp" / "uploads").iterdir())
                assert spooled.read_bytes() == clip.read_bytes() and spooled.stat().st_mode & 0o777 == 0o600
                # The video plays from disk through a link of this browser session (rehab.app.file_links).
                src = page.locator("video[src*='/files/']").first.get_attribute("src")
                media = urllib.parse.urlsplit(urllib.parse.urljoin(page.url, src)).path
                played = page.request.get(f"http://127.0.0.1:{port}{media}", headers={"Range": "bytes=0-99"})
                assert played.status == 206 and played.headers["content-type"] == "video/mp4"
                video_file = next(data_dir.rglob("annotated.mp4"))
                assert played.body() == video_file.read_bytes()[:100]
                # The downloads are links streamed from disk too, under their own names.
                csv_link = page.get_by_role("link", name="Download frames.csv").get_attribute("href")
                got = page.request.get(f"http://127.0.0.1:{port}{csv_link}")
                assert got.status == 200 and 'filename="frames.csv"' in got.headers["content-disposition"]
                assert got.body() == (video_file.parent / "frames.csv").read_bytes()

                # The media link: with this browser's cookie yes; without a cookie or with another login's, no.
                assert page.request.get(f"http://127.0.0.1:{port}{media}").status == 200
                assert _status(port, media) == 401
                assert _status(port, media, _cookie_of(port, OTHER_USER, OTHER_PASSWORD)) == 404

                page.get_by_role("link", name="History").click()
                page.get_by_role("heading", name="History").wait_for(timeout=TIMEOUT_S * 1000)
                with page.expect_download(timeout=TIMEOUT_S * 1000) as download:
                    page.get_by_role("button", name="Export this patient's sessions (CSV)").click()
                exported = Path(download.value.path()).read_text(encoding="utf-8")

                page.get_by_role("link", name="Log out").click()
                page.wait_for_url("**/login", timeout=TIMEOUT_S * 1000)
                # Logged out: the same browser's media link is refused now.
                assert page.request.get(f"http://127.0.0.1:{port}{media}").status == 401
            except Exception:
                page.screenshot(path=str(shots / "login_failure.png"))
                raise
            finally:
                browser.close()
    finally:
        bs.stop_server(server, timeout_s=20)
    log = (tmp_path / "server.log").read_text()

    # The export neutralises the formula-like pseudonym: a spreadsheet shows it as text.
    [row] = list(csv.DictReader(io.StringIO(exported)))
    assert row["pseudonym"] == "'" + INJECTED_PSEUDONYM, row
    # Folders carry ids, not the pseudonym or the clip's name; the upload's temporary copy is gone.
    names = [p.name for p in data_dir.rglob("*")]
    assert not any("HYPERLINK" in n or clip.stem in n for n in names), names
    assert not any(p.is_file() for p in (data_dir / "tmp").rglob("*"))
    assert bs.private_mode_problems(data_dir) == [], log[-2000:]
    # The audit trail knows who did what.
    with Store(data_dir) as store:
        trail = [(e["user"], e["action"]) for e in store.audit_log()]
    for entry in ("login", "analyse", "view", "export", "logout"):
        assert (bs.TEST_USER, entry) in trail, trail
