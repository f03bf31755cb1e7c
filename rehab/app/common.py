"""What every page shares: settings, the password gate, the cached model, the history store, session choices.

Nothing here computes anything about poses; it wires the library into Streamlit and turns every failure
(missing model, corrupt model, unreadable database) into a message on the page instead of a traceback.
"""

from __future__ import annotations

import hmac
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from rehab.app import about
from rehab.app_settings import AppSettings, is_loopback
from rehab.store import PSEUDONYM_MAX_LEN, Store, StoreError

if TYPE_CHECKING:
    from rehab.runtime.model import PoseModel
    from rehab.settings import RuntimeSettings

log = logging.getLogger(__name__)

APP_TITLE = "Rehab pose monitor"
# Session-state keys owned by the app (not widget keys: widget state is dropped when a page is left).
ANONYMIZE_KEY = "rehab.anonymize"
PATIENT_KEY = "rehab.patient"
AUTH_KEY = "rehab.authenticated"
NEW_PATIENT_OPTION = "+ new pseudonym…"
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def load_app_settings() -> AppSettings:
    """The app settings, or a message and a stopped page when they are invalid."""
    try:
        return AppSettings.load()
    except (ValueError, FileNotFoundError) as err:
        st.error(f"The app settings are invalid: {err}")
        st.stop()
        raise  # st.stop() raises; this line only satisfies type checkers


def enforce_access(settings: AppSettings) -> None:
    """Stop the page unless the visitor may see it.

    Listening beyond localhost without a password is refused outright (anyone on the network could
    watch the camera); with a password set, every browser session has to enter it once.
    """
    address = st.get_option("server.address")
    if not settings.password_required and not is_loopback(address):
        st.error(f"This app listens on {address or 'all network interfaces'} but no password is configured. "
                 "Set REHAB_APP_PASSWORD (or `password` in the app settings file) and restart, or start it on "
                 "127.0.0.1.")
        st.stop()
    if not settings.password_required or st.session_state.get(AUTH_KEY):
        return
    st.title(APP_TITLE)
    with st.form("login"):
        given = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Open")
    if submitted:
        if hmac.compare_digest(given.encode(), settings.password.encode()):
            st.session_state[AUTH_KEY] = True
            st.rerun()
        st.error("Wrong password.")
    st.stop()


@st.cache_resource(show_spinner="Loading the pose model…", max_entries=2)
def _load_model(path: str | None, modified_ns: int, threads: int | None) -> PoseModel:
    # ``modified_ns`` is part of the cache key only: a replaced model file is loaded afresh.
    from rehab.runtime.model import PoseModel

    model = PoseModel.load(path, threads=threads)
    # Once per model the server loads: the server log says which device runs it and why (a GPU provider
    # that is installed but unused is a WARNING, so that it shows without any logging set-up).
    report = device_report(model)
    (log.warning if report.gpu_unavailable else log.info)("%s", report.line)
    return model


def device_report(model: PoseModel) -> about.DeviceReport:
    """Which device runs ``model`` and why (the Settings page and the server log say the same)."""
    import onnxruntime as ort

    from rehab.runtime.session import nvidia_gpu_visible

    return about.device_report(model.providers, ort.get_available_providers(), nvidia_gpu_visible())


def model_path_label(settings: AppSettings) -> str:
    if settings.model_path is not None:
        return str(settings.model_path)
    return "the embedded default model (rehab/models/default.onnx)"


def get_model(settings: AppSettings, show_error: bool = True) -> PoseModel | None:
    """The pose model named in the settings, or None after showing why it cannot be used."""
    path = settings.model_path
    try:
        if path is None:
            from rehab.runtime.model import DEFAULT_MODEL_PATH

            resolved = DEFAULT_MODEL_PATH
        else:
            resolved = Path(path)
        modified = resolved.stat().st_mtime_ns if resolved.is_file() else 0
        return _load_model(None if path is None else str(path), modified, settings.threads)
    except (FileNotFoundError, ValueError, OSError, ImportError) as err:
        # ModelLoadError (corrupt file) and metadata errors are ValueErrors with a message naming the file.
        log.warning("pose model unavailable: %s", err)
        if show_error:
            st.error(f"**The pose model cannot be used.** {err}")
            st.info("Pages that do not need the model (History, Settings) keep working. Point the app at a "
                    "model with `rehab app --model path/to/model.onnx` or the REHAB_APP_MODEL variable.")
        return None


def anonymize_enabled(settings: AppSettings) -> bool:
    """The face-blurring choice of this browser session (the settings' default until changed)."""
    if ANONYMIZE_KEY not in st.session_state:
        st.session_state[ANONYMIZE_KEY] = settings.anonymize_default
    return bool(st.session_state[ANONYMIZE_KEY])


def runtime_settings(settings: AppSettings) -> RuntimeSettings | None:
    """Pipeline settings from the optional file, with this session's anonymisation choice applied."""
    from rehab.settings import RuntimeSettings

    try:
        base = (RuntimeSettings.from_yaml(settings.runtime_settings_path) if settings.runtime_settings_path
                else RuntimeSettings())
    except (ValueError, FileNotFoundError) as err:
        st.error(f"The pipeline settings file cannot be used: {err}")
        return None
    return base.with_overrides(anonymize={"enabled": anonymize_enabled(settings)})


def open_store(settings: AppSettings) -> Store | None:
    try:
        return Store(settings.data_dir)
    except StoreError as err:
        st.error(f"The session history cannot be opened: {err}")
        return None


def patient_picker(store: Store | None, key: str, label: str = "Patient (pseudonym)") -> str | None:
    """Choose an existing pseudonym or type a new one; remembered across pages. None when none is given."""
    known = [p["pseudonym"] for p in store.patients()] if store is not None else []
    current = st.session_state.get(PATIENT_KEY)
    options = known + [NEW_PATIENT_OPTION]
    index = options.index(current) if current in known else len(options) - 1
    choice = st.selectbox(label, options, index=index, key=f"{key}.choice",
                          help="A label of your choosing, e.g. P-014. No real names are needed or stored.")
    if choice != NEW_PATIENT_OPTION:
        st.session_state[PATIENT_KEY] = choice
        return choice
    typed = st.text_input("New pseudonym", key=f"{key}.new", max_chars=PSEUDONYM_MAX_LEN,
                          placeholder="e.g. P-014").strip()
    if typed:
        st.session_state[PATIENT_KEY] = typed
        return typed
    return None


def slug(text: str) -> str:
    """A file-name-safe version of a pseudonym or exercise name."""
    return _SLUG.sub("-", text).strip("-") or "x"


def new_output_dir(settings: AppSettings, kind: str, *parts: str) -> Path:
    """A fresh folder data_dir/kind/<time>_<parts> for one recording or one uploaded video's results."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = settings.data_dir / kind / "_".join([stamp, *(slug(p) for p in parts if p)])
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def format_deg(value: float | None) -> str:
    if value is None or value != value:  # NaN: an unreliable or absent angle
        return "–"
    return f"{value:.0f}°"
