"""`rehab app` start-up (rehab.app.launch): the real Streamlit server, and the refusal to listen unprotected."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from rehab.app.launch import ENTRY_FILE, LaunchError, build_command, check_bind
from rehab.app_settings import AppSettings, is_loopback
from tests.e2e.browser_support import free_port

STARTUP_TIMEOUT_S = 30.0


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("", False), ("192.168.1.20", False), ("::", False), ("clinic-pc.local", False),
])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_listening_beyond_localhost_needs_a_password(monkeypatch):
    monkeypatch.delenv("REHAB_APP_PASSWORD", raising=False)
    with pytest.raises(LaunchError, match="refusing to listen on '0.0.0.0' without a password"):
        check_bind("0.0.0.0", AppSettings())
    check_bind("127.0.0.1", AppSettings())
    check_bind("0.0.0.0", AppSettings(password="s3cret"))
    monkeypatch.setenv("REHAB_APP_PASSWORD", "from-env")
    check_bind("0.0.0.0", AppSettings.load())


def test_command_is_headless_on_the_asked_address_and_port():
    command = build_command("127.0.0.1", 8600, AppSettings(max_upload_mb=50))
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(ENTRY_FILE)]
    options = dict(zip(command[5::2], command[6::2]))
    assert options["--server.headless"] == "true"
    assert options["--server.address"] == "127.0.0.1"
    assert options["--server.port"] == "8600"
    assert options["--server.maxUploadSize"] == "50"
    assert options["--browser.gatherUsageStats"] == "false"
    with pytest.raises(LaunchError, match="port"):
        build_command("127.0.0.1", 70000, AppSettings())


def test_launch_starts_a_server_that_answers(tmp_path):
    port = free_port()
    code = ("import sys; from rehab.app.launch import launch; "
            f"sys.exit(launch('127.0.0.1', {port}, data_dir={str(tmp_path / 'data')!r}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHAB_APP_")}
    server = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        body = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as reply:
                    body = reply.read().decode()
                    break
            except OSError:
                time.sleep(0.2)
        assert body == "ok", server.stdout.read() if server.poll() is not None else "no answer"
    finally:
        # The launcher and the Streamlit child share a new session: stop both.
        os.killpg(server.pid, 15)
        server.wait(15)
