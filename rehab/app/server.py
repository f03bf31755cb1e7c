"""The dashboard's ASGI server: Streamlit's ``st.App`` around the page script, with the login in front.

``rehab app`` runs ``streamlit run`` on this file; Streamlit finds the ``st.App`` assigned to ``app`` below
and serves it with uvicorn (TLS, port and upload limit come from its command-line flags). Being an entry
file, it does its set-up when imported: files it creates are owner-only, SIGHUP stops it as SIGTERM does,
and the gateway (accounts, session secret) is built from the same settings the page reads.
"""

import atexit
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

import streamlit as st

from rehab.accounts import AuthError
from rehab.app import gateway
from rehab.app.common import TEMP_DIR
from rehab.app_settings import AppSettings, is_loopback
from rehab.store import make_private_dir

log = logging.getLogger("rehab.app.server")

PAGE_SCRIPT = Path(__file__).resolve().parent / "main.py"
# Created files are 0600 and folders 0700 whatever umask the process was started with: recordings,
# exports, the database and temporary uploads hold patients' data.
PRIVATE_UMASK = 0o077

os.umask(PRIVATE_UMASK)
# systemd and terminals send SIGHUP; uvicorn shuts down cleanly on SIGTERM only, so pass it on as that.
signal.signal(signal.SIGHUP, lambda signum, frame: os.kill(os.getpid(), signal.SIGTERM))
try:
    if st.get_option("server.baseUrlPath"):
        # The gateway's route rules (media, uploads, health) are written for paths at the root.
        raise ValueError("server.baseUrlPath is not supported; serve the dashboard at the root of its address "
                         "(a reverse proxy can map a sub-path to it)")
    _settings = AppSettings.load()
    make_private_dir(Path(_settings.data_dir))
    # Uploads left by a server that was killed mid-analysis: nobody will finish them, and they are unblurred.
    shutil.rmtree(Path(_settings.data_dir) / TEMP_DIR, ignore_errors=True)
    _gateway = gateway.build_gateway(_settings).install()
    # Uploads still held when the server stops (SIGTERM, SIGHUP, Ctrl-C) are removed with it.
    atexit.register(_gateway.uploads.clear)
    if not _gateway.enabled and not is_loopback(st.get_option("server.address")):
        raise ValueError(f"no account is configured, so the dashboard listens on localhost only, not on "
                         f"{st.get_option('server.address') or 'all interfaces'!r}; `rehab users add NAME` makes one")
except (AuthError, ValueError, OSError) as _err:
    # `rehab app` checks all of this before starting the server; this is for a hand-started server.
    log.error("cannot start the dashboard: %s", _err)
    sys.exit(2)
if not _gateway.enabled:
    log.warning("no account is configured: anyone who can reach %s can open the dashboard "
                "(`rehab users add NAME` makes one)", "this machine's loopback address")

app = st.App(PAGE_SCRIPT, middleware=_gateway.middleware(), routes=_gateway.routes())
