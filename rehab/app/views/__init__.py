"""The dashboard's pages, one Streamlit script each (listed in rehab/app/main.py)."""
