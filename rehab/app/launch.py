"""Start the dashboard: ``streamlit run`` on the entry file, headless, on the address and port asked for.

``rehab app`` calls :func:`launch`. The app listens on 127.0.0.1 by default; any other address makes it
reachable from the network, so that is refused unless a password is configured (settings file or
REHAB_APP_PASSWORD), which the app then asks every browser session for.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from rehab.app_settings import AppSettings, is_loopback

log = logging.getLogger(__name__)

ENTRY_FILE = Path(__file__).resolve().parent / "main.py"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
_MAX_PORT = 65535
SHUTDOWN_TIMEOUT_S = 10.0
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class LaunchError(ValueError):
    """The app cannot be started as asked (e.g. a public address without a password)."""


def check_bind(host: str, settings: AppSettings) -> None:
    if not is_loopback(host) and not settings.password_required:
        raise LaunchError(
            f"refusing to listen on {host!r} without a password: anyone who can reach this machine could open the "
            "camera and the patients' history. Set REHAB_APP_PASSWORD (or `password` in the app settings file "
            f"given by REHAB_APP_CONFIG), or listen on {DEFAULT_HOST} only.")


def build_command(host: str, port: int, settings: AppSettings) -> list[str]:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= _MAX_PORT:
        raise LaunchError(f"port must be a whole number in 1..{_MAX_PORT}, got {port!r}")
    return [
        sys.executable, "-m", "streamlit", "run", str(ENTRY_FILE),
        "--server.headless", "true",
        "--server.address", host,
        "--server.port", str(port),
        # The browser refuses larger files before sending them; the page checks the size again.
        "--server.maxUploadSize", str(settings.max_upload_mb),
        # No usage statistics leave a clinic's machine, and no file watcher reloads code under a session.
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        # Hide the developer menu (deploy, rerun, settings) from therapists.
        "--client.toolbarMode", "minimal",
    ]


def build_env(settings: AppSettings, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(settings.to_env())
    # The entry file imports rehab; make the package importable even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def launch(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, settings: AppSettings | None = None,
           model_path: str | os.PathLike[str] | None = None, data_dir: str | os.PathLike[str] | None = None) -> int:
    """Run the dashboard until it is stopped (Ctrl+C); returns Streamlit's exit code.

    ``settings`` default to AppSettings.load() (REHAB_APP_CONFIG file, then REHAB_APP_* variables);
    ``model_path`` and ``data_dir`` override them. Raises LaunchError before starting anything when the
    address needs a password and none is configured.
    """
    settings = settings or AppSettings.load()
    if model_path is not None:
        settings = AppSettings.from_dict({**_as_dict(settings), "model_path": model_path})
    if data_dir is not None:
        settings = AppSettings.from_dict({**_as_dict(settings), "data_dir": data_dir})
    check_bind(host, settings)
    if settings.model_path is not None and not Path(settings.model_path).is_file():
        log.warning("model %s not found: the app starts, and its pages say so", settings.model_path)
    command = build_command(host, port, settings)
    shown = f"[{host}]" if ":" in host else host
    log.info("dashboard at http://%s:%d (data in %s)%s", shown, port, Path(settings.data_dir).resolve(),
             "; password required" if settings.password_required else "")
    process = subprocess.Popen(command, env=build_env(settings))
    try:
        return process.wait()
    except KeyboardInterrupt:
        # Ctrl+C reached Streamlit too (same process group): give it time to close its sessions.
        try:
            return process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.terminate()
            return process.wait()


def _as_dict(settings: AppSettings) -> dict:
    from dataclasses import asdict

    return asdict(settings)
