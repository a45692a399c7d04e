"""CNN Studio: the entry script. Page config, per-tab state, the sidebar, then the page the URL names."""
import streamlit as st

from cnn import state

st.set_page_config(page_title="CNN Studio", page_icon="🧠", layout="wide")
state.init()

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/configure.py", title="Configure", icon="🧱"),
    st.Page("pages/train.py", title="Train", icon="🏋️"),
    st.Page("pages/predict.py", title="Predict", icon="✏️"),
    st.Page("pages/evaluate.py", title="Evaluate", icon="📊"),
    st.Page("pages/learn.py", title="Learn", icon="🎓"),
    st.Page("pages/models.py", title="Models", icon="🗂️"),
]

page = st.navigation(PAGES)
state.sidebar()
page.run()
