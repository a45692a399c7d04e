"""CNN Studio's Streamlit glue: the only code besides pages/ that imports Streamlit.

    session    every session-state key, the tab (what a browser refresh keeps), flash messages
    resources  cached loaders: models by name + file time, datasets, evaluations, the speed probe
    jobs       the training jobs of this server process
    chrome     page set-up, the sidebar, titles with their flash messages, the require_* guards
    hooks      the one change this app makes to Streamlit itself, installed by streamlit_app.py
"""
