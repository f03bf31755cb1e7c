"""What every page shares: settings, the password gate, the cached model, the history store, session choices.

Nothing here computes anything about poses; it wires the library into Streamlit and turns every failure
(missing model, corrupt model, unreadable database) into a message on the page instead of a traceback.
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import urllib.parse
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from rehab.app import about
from rehab.app_settings import AppSettings, is_loopback
from rehab.store import PSEUDONYM_MAX_LEN, Store, StoreError, make_private_dir

if TYPE_CHECKING:
    from rehab.runtime.model import PoseModel
    from rehab.settings import RuntimeSettings

log = logging.getLogger(__name__)

APP_TITLE = "Rehab pose monitor"
# Session-state keys owned by the app (not widget keys: widget state is dropped when a page is left).
ANONYMIZE_KEY = "rehab.anonymize"
PATIENT_KEY = "rehab.patient"
USER_KEY = "rehab.user"
# The user name in the audit trail when no login is configured (a single-user machine on localhost).
LOCAL_USER = "local"
NEW_PATIENT_OPTION = "+ new pseudonym…"
TEMP_DIR = "tmp"
# Random part of a folder id: unique without telling anything about the patient or the file.
FOLDER_ID_BYTES = 4
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def load_app_settings() -> AppSettings:
    """The app settings, or a message and a stopped page when they are invalid."""
    try:
        return AppSettings.load()
    except (ValueError, FileNotFoundError) as err:
        st.error(f"The app settings are invalid: {err}")
        st.stop()
        raise  # st.stop() raises; this line only satisfies type checkers


def enforce_access(settings: AppSettings) -> str:
    """The logged-in user's name, or a stopped page when this visitor may not see the app.

    The login itself happens at the server (rehab.app.gateway) before any page, websocket or file is served;
    this checks again from the page's side and binds this browser session to its login, which is what the
    server uses to serve media files and accept uploads for it only. Started without ``rehab app`` (plain
    ``streamlit run``), nothing guards the server, so the page refuses to open when accounts are configured
    or the address is not local.
    """
    from rehab.app import gateway

    gw = gateway.active()
    address = st.get_option("server.address")
    if gw is None:
        if settings.password_required or not is_loopback(address):
            st.error("This dashboard must be started with `rehab app`, which puts every page, file and upload "
                     "behind the login. It was started another way, so it stays closed.")
            st.stop()
        return LOCAL_USER
    if not gw.enabled:
        if not is_loopback(address):  # the server refuses to start so; this is the page's own check
            st.error("No account is configured, so this dashboard opens on localhost only.")
            st.stop()
        return LOCAL_USER
    login = gw.session_from_token(st.context.cookies.get(gateway.COOKIE_NAME))
    ctx = get_script_run_ctx()
    if login is None or ctx is None:
        # The server refused this browser's connection unless it was logged in; the login has since expired.
        st.error("Your login has expired. Reload the page to log in again.")
        st.stop()
        raise AssertionError  # st.stop() raises; this line only satisfies type checkers
    gw.bind_session(ctx.session_id, login)
    st.session_state[USER_KEY] = login.user
    with st.sidebar:
        st.caption(f"Logged in as **{login.user}**")
        st.markdown(f'<a href="{gateway.LOGOUT_PATH}" target="_self">Log out</a>', unsafe_allow_html=True)
    return login.user


def current_user() -> str:
    """Who uses this browser session, for the audit trail ("local" when no login is configured)."""
    return st.session_state.get(USER_KEY, LOCAL_USER)


def audit(settings: AppSettings, action: str, pseudonym: str | None = None, session_id: int | None = None,
          detail: str = "") -> None:
    """Add an entry to the audit trail; a failure is logged and shown, never a traceback."""
    try:
        with Store(settings.data_dir) as store:
            store.audit(current_user(), action, pseudonym=pseudonym, session_id=session_id, detail=detail)
    except StoreError as err:
        log.error("audit entry %s could not be written: %s", action, err)
        st.warning(f"This action could not be written to the audit trail: {err}")


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
    """A file-name-safe version of a pseudonym or exercise name (download names only, never folders)."""
    return _SLUG.sub("-", text).strip("-") or "x"


def new_output_dir(settings: AppSettings, kind: str) -> Path:
    """A fresh folder data_dir/kind/<time>-<random id> for one recording or one uploaded video's results.

    The name carries no pseudonym and no original file name (a folder listing must not tell who was filmed);
    the history database links the folder to its patient.
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = make_private_dir(Path(settings.data_dir) / kind)
    while True:
        path = parent / f"{stamp}-{secrets.token_hex(FOLDER_ID_BYTES)}"
        try:
            path.mkdir(mode=0o700)
            return path
        except FileExistsError:
            continue


def private_temp_dir(settings: AppSettings) -> Path:
    """The data folder's own temporary folder (owner-only), for uploads while they are analysed."""
    return make_private_dir(Path(settings.data_dir) / TEMP_DIR)


def gateway_active() -> bool:
    """Whether this page runs in `rehab app`'s server (behind rehab.app.gateway)."""
    from rehab.app import gateway

    return gateway.active() is not None


def spooled_upload(upload):
    """Where the server put an uploaded file's bytes (rehab.app.uploads), or None.

    None when the upload did not come through the gateway (e.g. Streamlit's AppTest hands its files over in
    memory, with their content) or was removed since (the widget's remove button, a server restart).
    """
    from rehab.app import gateway

    gw = gateway.active()
    ctx = get_script_run_ctx()
    if gw is None or ctx is None:
        return None
    return gw.uploads.get(ctx.session_id, getattr(upload, "file_id", ""))


def _file_link(path: str | Path) -> str | None:
    """This browser session's /files/ link to ``path`` (rehab.app.file_links), or None outside `rehab app`'s
    server (Streamlit's AppTest), where files go through Streamlit's in-memory media store."""
    from rehab.app import gateway

    gw = gateway.active()
    ctx = get_script_run_ctx()
    return None if gw is None or ctx is None else gw.files.url_for(ctx.session_id, path)


def show_video(container, path: str | Path) -> None:
    """Play a recording from disk rather than through Streamlit's media store, which would hold the whole file
    in the server's memory while it is shown."""
    link = _file_link(path)
    if link is None:
        container.video(str(path))
    else:
        container.video(urllib.parse.urljoin(str(st.context.url), link), format="video/mp4")


def download_link(container, label: str, path: Path, key: str) -> None:
    """A download of ``path`` streamed from disk (Streamlit's download button would hold the file in memory)."""
    link = _file_link(path)
    if link is None:
        container.download_button(label, path.read_bytes(), file_name=path.name, key=key)
        return
    href = html.escape(link + "?download=1", quote=True)
    container.markdown(f'<a href="{href}" download="{html.escape(path.name, quote=True)}" target="_self">'
                       f"{html.escape(label)}</a>", unsafe_allow_html=True)
