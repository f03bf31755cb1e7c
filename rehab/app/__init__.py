"""The therapist's dashboard: Streamlit pages (UI only; the maths lives in rehab.pipeline and below).

Start it with ``rehab app`` (see ``rehab.app.launch``); ``main.py`` is the Streamlit entry file.
"""
