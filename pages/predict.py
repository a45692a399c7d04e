"""Predict: coming with issue [3 of 5]."""
import streamlit as st

st.title("✏️ Predict")
st.info("Coming next: draw a digit or upload a photo and see the prediction, activation maps, filters, "
        "Grad-CAM and a robustness sweep. Until then, `python -m cnn predict MODEL IMAGE` works.")
