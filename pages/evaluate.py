"""Evaluate: coming with issue [4 of 5]."""
import streamlit as st

st.title("📊 Evaluate")
st.info("Coming soon: the confusion matrix with drill-down, per-class metrics and the hardest examples. "
        "Until then, `python -m cnn evaluate MODEL` prints accuracy, loss and the confusion matrix.")
