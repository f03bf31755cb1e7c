"""Start the dashboard: ``streamlit run`` on the ASGI server file (rehab/app/server.py), headless.

``rehab app`` calls :func:`launch`. Everything is checked before the server starts, each problem as one line
naming the setting: the app settings, the users file, the TLS files, and the address. The app listens on
127.0.0.1 by default; any other address makes it reachable from the network, which needs an account (users
file or REHAB_APP_PASSWORD) and TLS (``--certfile``/``--keyfile``), or ``--insecure-http`` behind a reverse
proxy that terminates TLS. SIGTERM and SIGHUP (systemd, container runtimes, a closed terminal) stop the
server as Ctrl+C does, and on Linux the server also stops if the launcher dies.
"""

from __future__ import annotations

import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rehab.app_settings import AppSettings, is_loopback

log = logging.getLogger(__name__)

SERVER_FILE = Path(__file__).resolve().parent / "server.py"
# Kept for readers of older code: the page script that the server serves.
ENTRY_FILE = Path(__file__).resolve().parent / "main.py"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
_MAX_PORT = 65535
SHUTDOWN_TIMEOUT_S = 10.0
# How often the launcher looks whether the server has ended (or a stop has taken too long).
_POLL_S = 0.5
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]
# prctl(PR_SET_PDEATHSIG): the kernel signals the server when the launcher dies, even by SIGKILL.
_PR_SET_PDEATHSIG = 1


class LaunchError(ValueError):
    """The app cannot be started as asked (e.g. a public address without a password)."""


@dataclass(frozen=True)
class TlsFiles:
    certfile: Path
    keyfile: Path


def check_tls(certfile: str | os.PathLike[str] | None, keyfile: str | os.PathLike[str] | None) -> TlsFiles | None:
    """Both TLS files or neither; both readable and a matching certificate/key pair."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise LaunchError("--certfile and --keyfile go together: give both (PEM certificate chain and its key)")
    tls = TlsFiles(Path(certfile).expanduser().resolve(), Path(keyfile).expanduser().resolve())
    for flag, path in (("--certfile", tls.certfile), ("--keyfile", tls.keyfile)):
        if not path.is_file():
            raise LaunchError(f"{flag} {path} is not a file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(tls.certfile), str(tls.keyfile))
    except (ssl.SSLError, OSError) as err:
        raise LaunchError(f"--certfile {tls.certfile} and --keyfile {tls.keyfile} are not a usable PEM "
                          f"certificate and key pair: {err}") from None
    return tls


def check_bind(host: str, settings: AppSettings, tls: TlsFiles | None = None, insecure_http: bool = False,
               accounts_configured: bool | None = None) -> None:
    if is_loopback(host):
        return
    if not (settings.password_required if accounts_configured is None else accounts_configured):
        raise LaunchError(
            f"refusing to listen on {host!r} without an account: anyone who can reach this machine could open the "
            "camera and the patients' history. Add one with `rehab users add NAME` (or set REHAB_APP_PASSWORD), "
            f"or listen on {DEFAULT_HOST} only.")
    if tls is None and not insecure_http:
        raise LaunchError(
            f"refusing to listen on {host!r} over plain HTTP: passwords and patient data would cross the network in "
            "clear. Give --certfile and --keyfile, or --insecure-http when a reverse proxy in front terminates "
            "TLS (README: 'Serving on a network').")


def build_command(host: str, port: int, settings: AppSettings, tls: TlsFiles | None = None) -> list[str]:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= _MAX_PORT:
        raise LaunchError(f"port must be a whole number in 1..{_MAX_PORT}, got {port!r}")
    command = [
        sys.executable, "-m", "streamlit", "run", str(SERVER_FILE),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        # The browser refuses larger files before sending them; the gateway refuses them from their
        # Content-Length, and Streamlit again while reading.
        "--server.maxUploadSize", str(settings.max_upload_mb),
        # No usage statistics leave a clinic's machine, and no file watcher reloads code under a session.
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        # Hide the developer menu (deploy, rerun, settings) from therapists, and tracebacks from browsers.
        "--client.toolbarMode", "minimal",
        "--client.showErrorDetails", "none",
    ]
    if tls is not None:
        command += ["--server.sslCertFile", str(tls.certfile), "--server.sslKeyFile", str(tls.keyfile)]
    return command


def build_env(settings: AppSettings, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(settings.to_env())
    # The entry file imports rehab; make the package importable even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def prepare(host: str = DEFAULT_HOST, settings: AppSettings | None = None,
            model_path: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] | None = None,
            certfile: str | os.PathLike[str] | None = None, keyfile: str | os.PathLike[str] | None = None,
            insecure_http: bool = False) -> tuple[AppSettings, TlsFiles | None]:
    """Every check ``rehab app`` makes before starting anything; LaunchError (one line) on the first problem."""
    from rehab.accounts import AuthError, load_accounts

    try:
        settings = settings or AppSettings.load()
        overrides = {k: v for k, v in (("model_path", model_path), ("data_dir", data_dir)) if v is not None}
        if overrides:
            settings = AppSettings.from_dict({**asdict(settings), **overrides})
        accounts = load_accounts(settings.users_path, settings.password)
    except (AuthError, ValueError, FileNotFoundError) as err:
        raise LaunchError(str(err)) from None
    tls = check_tls(certfile, keyfile)
    check_bind(host, settings, tls, insecure_http, accounts_configured=accounts.configured)
    if settings.model_path is not None and not Path(settings.model_path).is_file():
        log.warning("model %s not found: the app starts, and its pages say so", settings.model_path)
    return settings, tls


def launch(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, settings: AppSettings | None = None,
           model_path: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] | None = None,
           certfile: str | os.PathLike[str] | None = None, keyfile: str | os.PathLike[str] | None = None,
           insecure_http: bool = False) -> int:
    """Run the dashboard until it is stopped (Ctrl+C, SIGTERM, SIGHUP); returns the server's exit code.

    ``settings`` default to AppSettings.load() (REHAB_APP_CONFIG file, then REHAB_APP_* variables);
    ``model_path`` and ``data_dir`` override them. Raises LaunchError before starting anything when a
    setting is invalid or the address needs an account or TLS that is missing.
    """
    settings, tls = prepare(host, settings, model_path, data_dir, certfile, keyfile, insecure_http)
    command = build_command(host, port, settings, tls)
    shown = f"[{host}]" if ":" in host else host
    log.info("dashboard at %s://%s:%d (data in %s)%s", "https" if tls else "http", shown, port,
             Path(settings.data_dir).resolve(), "; login required" if settings.password_required else
             "; no account configured, no login asked")
    return run_server(command, build_env(settings))


def run_server(command: list[str], env: dict[str, str]) -> int:
    """Run the server process; SIGTERM/SIGHUP to this process stop it too, and we wait for it to close."""
    stop_requested: list[tuple[str, float]] = []

    def forward(signum, frame) -> None:
        stop_requested.append((signal.Signals(signum).name, time.monotonic()))
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)

    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    process = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    for s in STOP_SIGNALS:
        signal.signal(s, forward)
    try:
        while True:
            try:
                code = process.wait(timeout=_POLL_S)
                break
            except subprocess.TimeoutExpired:
                if stop_requested and time.monotonic() - stop_requested[0][1] > SHUTDOWN_TIMEOUT_S:
                    log.warning("the server did not stop within %.0f s; killing it", SHUTDOWN_TIMEOUT_S)
                    process.kill()
            except KeyboardInterrupt:
                # Ctrl+C reached the server too (same process group): give it time to close its sessions.
                stop_requested.append(("SIGINT", time.monotonic()))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if process.poll() is None:
            process.kill()
            process.wait()
    if stop_requested:
        log.info("dashboard stopped (%s)", stop_requested[0][0])
        # uvicorn closes cleanly, then re-raises the signal it was stopped by: that is a clean stop we asked for.
        if code in (-signal.SIGTERM, -signal.SIGINT):
            return 0
    return code


def _die_with_parent() -> None:
    """In the child before exec: ask the kernel for SIGTERM when the launcher dies (Linux)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):
        pass  # not Linux's libc: the signal handlers above still cover SIGTERM and SIGHUP
