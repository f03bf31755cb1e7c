"""The therapist's dashboard: Streamlit pages (UI only; the maths lives in rehab.pipeline and below).

Start it with ``rehab app`` (see ``rehab.app.launch``): ``server.py`` is the ASGI server (``st.App`` with the
login of ``gateway.py`` in front of every route), ``main.py`` the page script it serves.
"""
