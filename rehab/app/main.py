"""Streamlit page script of the dashboard: page set-up, the access check, and the page list.

Served by rehab/app/server.py (``rehab app``), whose gateway asks for the login before any of this runs.
"""

from pathlib import Path

import streamlit as st

from rehab.app import common

_VIEWS = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title=common.APP_TITLE, page_icon=":material/accessibility_new:", layout="wide")
settings = common.load_app_settings()
common.enforce_access(settings)

navigation = st.navigation([
    st.Page(_VIEWS / "live.py", title="Live session", icon=":material/videocam:", url_path="live", default=True),
    st.Page(_VIEWS / "video.py", title="Video analysis", icon=":material/movie:", url_path="video"),
    st.Page(_VIEWS / "history.py", title="History", icon=":material/monitoring:", url_path="history"),
    st.Page(_VIEWS / "settings.py", title="Settings & about", icon=":material/settings:", url_path="settings"),
])
navigation.run()
