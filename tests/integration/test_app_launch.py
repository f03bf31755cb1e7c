"""`rehab app` start-up (rehab.app.launch): the real Streamlit server, and the refusal to listen unprotected."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rehab.app.launch import SERVER_FILE, LaunchError, build_command, check_bind, check_tls, prepare
from rehab.app_settings import AppSettings, is_loopback
from tests.e2e.browser_support import free_port, write_self_signed_cert

STARTUP_TIMEOUT_S = 30.0


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("", False), ("192.168.1.20", False), ("::", False), ("clinic-pc.local", False),
])
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_listening_beyond_localhost_needs_an_account_and_tls(monkeypatch, tmp_path):
    monkeypatch.delenv("REHAB_APP_PASSWORD", raising=False)
    monkeypatch.setenv("REHAB_APP_DATA_DIR", str(tmp_path))
    with pytest.raises(LaunchError, match="refusing to listen on '0.0.0.0' without an account"):
        check_bind("0.0.0.0", AppSettings(data_dir=tmp_path))
    check_bind("127.0.0.1", AppSettings(data_dir=tmp_path))
    with pytest.raises(LaunchError, match="over plain HTTP"):
        check_bind("0.0.0.0", AppSettings(data_dir=tmp_path, password="s3cret"))
    check_bind("0.0.0.0", AppSettings(data_dir=tmp_path, password="s3cret"), insecure_http=True)
    monkeypatch.setenv("REHAB_APP_PASSWORD", "from-env")
    check_bind("0.0.0.0", AppSettings.load(), insecure_http=True)


def test_a_users_file_without_accounts_does_not_open_the_network(tmp_path):
    from rehab.accounts import add_user, remove_user

    add_user(tmp_path / "users.json", "ann", "long enough")
    remove_user(tmp_path / "users.json", "ann")  # the file stays, with no account in it
    settings = AppSettings(data_dir=tmp_path)
    assert not settings.password_required
    with pytest.raises(LaunchError, match="without an account"):
        prepare("0.0.0.0", settings, insecure_http=True)


def test_tls_files_are_checked_before_start(tmp_path):
    cert, key = write_self_signed_cert(tmp_path)
    other_cert, other_key = write_self_signed_cert(tmp_path, "other")
    assert check_tls(None, None) is None
    assert check_tls(cert, key).certfile == cert.resolve()
    with pytest.raises(LaunchError, match="go together"):
        check_tls(cert, None)
    with pytest.raises(LaunchError, match="is not a file"):
        check_tls(tmp_path / "missing.crt", key)
    with pytest.raises(LaunchError, match="not a usable PEM certificate and key pair"):
        check_tls(cert, other_key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(LaunchError, match="not a usable PEM"):
        check_tls(garbage, key)
    settings, tls = prepare("0.0.0.0", AppSettings(data_dir=tmp_path, password="s3cret"), certfile=cert, keyfile=key)
    command = build_command("0.0.0.0", 8600, settings, tls)
    options = dict(zip(command[5::2], command[6::2]))
    assert options["--server.sslCertFile"] == str(cert.resolve())
    assert options["--server.sslKeyFile"] == str(key.resolve())


@pytest.mark.parametrize("env, message", [
    ({"REHAB_APP_PASSWORD": ""}, "REHAB_APP_PASSWORD is set but blank"),
    ({"REHAB_APP_PASSWORD": "   "}, "REHAB_APP_PASSWORD is set but blank"),
    ({"REHAB_APP_MAX_UPLOAD_MB": "abc"}, "REHAB_APP_MAX_UPLOAD_MB must be a whole number, got 'abc'"),
    ({"REHAB_APP_MAX_UPLOAD_MB": "0"}, "max_upload_mb must be a whole number of megabytes >= 1"),
    ({"REHAB_APP_THREADS": "two"}, "REHAB_APP_THREADS must be a whole number"),
    ({"REHAB_APP_SESSION_HOURS": "-1"}, "session_hours must be a number of hours"),
    ({"REHAB_APP_SESSION_HOURS": "soon"}, "REHAB_APP_SESSION_HOURS must be a number"),
    ({"REHAB_APP_ANONYMIZE_DEFAULT": "maybe"}, "REHAB_APP_ANONYMIZE_DEFAULT must be one of"),
])
def test_bad_settings_stop_rehab_app_with_one_line(tmp_path, env, message):
    """Through the real command line: exit 2 and one line naming the setting, never a traceback."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REHAB_APP_")}
    run = subprocess.run([sys.executable, "-c", "from rehab.cli import main; main()", "app", "--port",
                          str(free_port())], env={**base, "REHAB_APP_DATA_DIR": str(tmp_path), **env},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"version": 7, "users": {}}', "is not a version-1 rehab users file"),
    ('{"version": 1, "users": {"bad name!": {"hash": "scrypt$1"}}}', "user name 'bad name!' is not allowed"),
    ('{"version": 1, "users": {"ann": {"hash": "plain"}}}', "account 'ann' has no scrypt password hash"),
    (None, "cannot be read"),
])
def test_a_bad_users_file_stops_rehab_app_with_one_line(tmp_path, content, message):
    users = tmp_path / "users.json"
    if content is None:
        users.mkdir()  # a folder where the file should be: unreadable as a file
    else:
        users.write_text(content)
    base = {k: v for k, v in os.environ.items() if not k.startswith("REHAB_APP_")}
    run = subprocess.run([sys.executable, "-c", "from rehab.cli import main; main()", "app", "--port",
                          str(free_port())], env={**base, "REHAB_APP_DATA_DIR": str(tmp_path)},
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and message in run.stderr and str(users) in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_command_is_headless_on_the_asked_address_and_port():
    command = build_command("127.0.0.1", 8600, AppSettings(max_upload_mb=50))
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(SERVER_FILE)]
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


def test_data_lives_in_the_per_user_data_folder_by_default(monkeypatch, tmp_path):
    import platformdirs

    for name in ("REHAB_APP_DATA_DIR", "REHAB_APP_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    default = AppSettings.load().data_dir
    assert default == Path(platformdirs.user_data_dir("rehab-pose", appauthor=False))
    assert default.is_absolute() and tmp_path not in default.parents
    monkeypatch.setenv("REHAB_APP_DATA_DIR", str(tmp_path / "elsewhere"))
    assert AppSettings.load().data_dir == tmp_path / "elsewhere"
    assert AppSettings.load().users_path == tmp_path / "elsewhere" / "users.json"
