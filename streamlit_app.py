"""CNN Studio: the entry script.

`streamlit run streamlit_app.py` first imports this file to find the server app: that import (not as
__main__) creates it, with a start-up hook that loads TensorFlow and the default model in the background
and, hosted, the cookie that gives each browser its private workspace (app/workspaces.py).
Each browser session then runs this file as its script (as __main__): it installs the app's hook into
Streamlit, sets the page config and the navigation; each page calls chrome.page_setup() first thing.
"""
import streamlit as st

from app import chrome, hooks, session, warmup

if __name__ != "__main__":  # imported by `streamlit run` to find the server app
    from starlette.middleware import Middleware

    from app import workspaces

    # Hosted: every browser gets its private workspace token in an HttpOnly cookie on its first page load.
    cookies = [Middleware(workspaces.CookieMiddleware)] if workspaces.hosted() else []
    server = st.App("streamlit_app.py", lifespan=warmup.lifespan, middleware=cookies)
else:  # a session's script run
    hooks.install()  # before any training job runs: see app/hooks.py
    warmup.start()  # no-op when the server already started it
    st.set_page_config(page_title="CNN Studio", page_icon=":material/neurology:", layout="wide")
    chrome.entry_script_ran()

    PAGES = [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/configure.py", title="Configure", icon=":material/tune:"),
        st.Page("pages/classes.py", title="Your classes", icon=":material/category:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/predict.py", title="Predict", icon=":material/draw:"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
        st.Page("pages/learned.py", title="What it learned", icon=":material/visibility:"),
        st.Page("pages/models.py", title="Models", icon=":material/inventory_2:"),
    ]

    page = st.navigation(PAGES)
    goto = st.session_state.pop(session.GOTO, None)  # see chrome.page_setup
    if goto:
        st.switch_page(goto)
    page.run()
