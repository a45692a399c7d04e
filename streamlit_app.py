"""CNN Studio: the entry script. Installs the app's hook into Streamlit, sets the page config and the
navigation; each page then calls chrome.page_setup() (this tab's state and the sidebar) first thing."""
import streamlit as st

from app import chrome, hooks, session, warmup

hooks.install()  # before any training job runs: see app/hooks.py
warmup.start()  # TensorFlow and the default model load in the background (once per process)
st.set_page_config(page_title="CNN Studio", page_icon=":material/neurology:", layout="wide")
chrome.entry_script_ran()

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/configure.py", title="Configure", icon=":material/tune:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/predict.py", title="Predict", icon=":material/draw:"),
    st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
    st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
    st.Page("pages/models.py", title="Models", icon=":material/inventory_2:"),
]

page = st.navigation(PAGES)
goto = st.session_state.pop(session.GOTO, None)  # see chrome.page_setup
if goto:
    st.switch_page(goto)
page.run()
