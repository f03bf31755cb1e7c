"""A real Ray cluster on this machine for tests: a head node (and optionally more nodes) started with `ray start`.

Every process a node starts inherits a token in its environment (RAY_TEST_TOKEN_ENV), so stopping the cluster
kills exactly the processes it started (found by that token, killed by pid), never other Ray instances on
the machine; `ray stop` would stop them all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RAY_TEST_TOKEN_ENV = "REHAB_TEST_RAY_CLUSTER"
# Ray turns token authentication on when ~/.ray/auth_token exists (a local `ray.init()` writes one): the test
# cluster and its drivers say explicitly that it is off, so they do not depend on the home folder.
CLIENT_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
START_TIMEOUT_S = 180.0  # `ray start` takes ~3 s on a quiet machine, 15+ s on two busy cores
STOP_GRACE_S = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_start_command(python: str | os.PathLike[str]) -> list[str]:
    return [str(python), "-c", "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()", "start"]


def _processes_with_token(token: str) -> list[int]:
    pids = []
    needle = f"{RAY_TEST_TOKEN_ENV}={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def hidden_folder_prefix(folder: Path) -> list[str]:
    """A command prefix that runs the command with ``folder`` replaced by an empty tmpfs, for it alone."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs rehab-hidden "$0" && exec "$@"', str(folder)]


def can_hide_folders() -> bool:
    """Whether this machine lets us make mount namespaces (root, or unprivileged user namespaces)."""
    probe = Path(tempfile.mkdtemp(prefix="rray-hide-", dir="/tmp"))
    try:
        return subprocess.run(hidden_folder_prefix(probe) + ["true"], check=False, capture_output=True).returncode == 0
    except OSError:
        return False
    finally:
        probe.rmdir()


class RayCluster:
    """``with RayCluster() as cluster:`` a head with ``num_cpus`` CPUs at ``cluster.address``; its state API
    (dashboard) at ``cluster.dashboard_url``. ``add_node(python=..., env=...)`` joins another node."""

    def __init__(self, num_cpus: int = 2, env: dict[str, str] | None = None) -> None:
        self.num_cpus = num_cpus
        self.token = secrets.token_hex(8)
        # Short: Ray's Unix sockets live under it and their paths are limited to ~107 characters.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rray-", dir="/tmp"))
        self.port = free_port()
        self.dashboard_port = free_port()
        self.client_port = free_port()  # Ray client server: ray://127.0.0.1:client_port
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        # Workers at the tests' own priority (Ray's default is 15 steps nicer: slow on a busy machine).
        self.env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {}), **CLIENT_ENV, "RAY_worker_niceness": "0",
                    RAY_TEST_TOKEN_ENV: self.token}
        self._starters: list[subprocess.Popen] = []
        self._logs: list = []

    def _start(self, args: list[str], python: str | os.PathLike[str], env: dict[str, str], log_name: str,
               prefix: list[str] | None = None) -> None:
        log = open(self.temp_dir / log_name, "wb")  # noqa: SIM115 - the node writes to it until stop()
        self._logs.append(log)
        command = (prefix or []) + ray_start_command(python) + args + ["--block", "--disable-usage-stats"]
        proc = subprocess.Popen(command, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.temp_dir)
        self._starters.append(proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"--block" not in (self.temp_dir / log_name).read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`ray start` did not start: {(self.temp_dir / log_name).read_text()[-3000:]}")
            time.sleep(0.2)

    def __enter__(self) -> "RayCluster":
        try:
            self._start(["--head", "--num-cpus", str(self.num_cpus), "--port", str(self.port),
                         "--temp-dir", str(self.temp_dir), "--include-dashboard", "true",
                         "--dashboard-port", str(self.dashboard_port),
                         "--ray-client-server-port", str(self.client_port),
                         "--dashboard-agent-listen-port", str(free_port()),
                         "--metrics-export-port", str(free_port())],
                        sys.executable, self.env, "head.log")
            # The dashboard (state API) and the Ray client server come up after `ray start` returns.
            for port in (self.dashboard_port, self.client_port):
                self._wait_for_port(port)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"port {port} of the Ray head never opened: {self.log()}") from None
                time.sleep(0.2)

    def add_node(self, num_cpus: int = 1, python: str | os.PathLike[str] = sys.executable,
                 env: dict[str, str] | None = None, hide: Path | None = None) -> None:
        """Join a worker node (another raylet on this machine) started by ``python`` with ``env``. With
        ``hide``, the node runs in a mount namespace of its own where that folder is an empty tmpfs: a node
        that does not share it, as a node whose disk is not the shared filesystem."""
        node_env = {**(env if env is not None else self.env), **CLIENT_ENV, RAY_TEST_TOKEN_ENV: self.token}
        self._start(["--address", self.address, "--num-cpus", str(num_cpus),
                     "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port())],
                    python, node_env, f"node{len(self._starters)}.log",
                    prefix=None if hide is None else hidden_folder_prefix(hide))

    def stop(self) -> None:
        for proc in self._starters:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        while _processes_with_token(self.token) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in _processes_with_token(self.token):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self._starters:
            proc.wait(timeout=STOP_GRACE_S)
        for log in self._logs:
            log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)  # sessions, logs and sockets: a few MB per cluster

    def __exit__(self, *exc) -> None:
        self.stop()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(self.temp_dir.glob("*.log")))


@contextlib.contextmanager
def not_ray_server(reply: bytes):
    """A loopback TCP server that answers one connection with ``reply`` (something that is not Ray); yields
    its address as HOST:PORT."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(64)
                conn.sendall(reply)

        threading.Thread(target=answer, daemon=True).start()
        yield f"127.0.0.1:{server.getsockname()[1]}"
