"""A real `rehab app` server for the tests that talk to it over HTTP: started on a free loopback port with a
tiny real pose model and its own data folder, stopped with SIGTERM (the whole process group)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rehab.accounts import add_user
from tests.e2e.browser_support import free_port, write_tiny_pose_model

STARTUP_TIMEOUT_S = 60.0
USER, PASSWORD = "alice", "correct-horse-1"
OTHER_USER, OTHER_PASSWORD = "bob", "battery-staple-2"
MAX_UPLOAD_MB = 5
# `rehab` as the installed script runs it, from this checkout.
REHAB = (sys.executable, "-c", "from rehab.cli import main; main()")


@dataclass
class Server:
    process: subprocess.Popen
    port: int
    data_dir: Path
    log_path: Path
    # The certificate to trust when the server serves HTTPS.
    ca: Path | None = None

    def server_pid(self) -> int:
        """The Streamlit child of the launcher."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return int(children[0])

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def start_server(tmp: Path, extra_env: dict[str, str] | None = None, args: tuple[str, ...] = (),
                 ca: Path | None = None, users: bool = True, port: int | None = None) -> Server:
    data_dir = tmp / "data"
    if users:
        add_user(data_dir / "users.json", USER, PASSWORD)
        add_user(data_dir / "users.json", OTHER_USER, OTHER_PASSWORD)
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REHAB_APP_")}
    env.update({"REHAB_APP_DATA_DIR": str(data_dir), "REHAB_APP_MAX_UPLOAD_MB": str(MAX_UPLOAD_MB),
                "REHAB_APP_MODEL": str(write_tiny_pose_model(tmp / "tiny.onnx")), "REHAB_APP_THREADS": "1",
                **(extra_env or {})})
    log_path = tmp / "server.log"
    process = subprocess.Popen([*REHAB, "app", "--port", str(port), *args], env=env, stdout=log_path.open("w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, port, data_dir, log_path, ca)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, server.log()
        try:
            if http_request(server, "GET", "/_stcore/health")[0] == 200:
                return server
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"no answer within {STARTUP_TIMEOUT_S} s:\n{server.log()}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


def http_request(server: Server, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             timeout: float = 30.0) -> tuple[int, dict, bytes]:
    if server.ca is not None:
        import ssl

        conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=timeout,
                                           context=ssl.create_default_context(cafile=str(server.ca)))
    else:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        conn.close()
