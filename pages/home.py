"""Home: what CNN Studio does, a quick start, and the active model's card. No TensorFlow here."""
import streamlit as st

from app import chrome
from cnn.data.datasets import dataset_title
from cnn.core.text import accuracy_text, date_text

tab = chrome.page_setup()

chrome.title("CNN Studio")
st.markdown(
    "Build a convolutional neural network, train it while you watch it learn, then draw a digit or upload "
    "a photo and see **how your own network sees it**: probabilities, activation maps, filters and Grad-CAM, "
    "a confusion matrix of its mistakes, and a step-by-step lesson computed on your image with your weights.")

st.subheader("Quick start")
left, right = st.columns(2)
with left:
    st.markdown("**Try the pretrained model**")
    st.page_link("pages/predict.py", label="Draw a digit and see the prediction", icon=":material/draw:")
    st.page_link("pages/evaluate.py", label="See what it gets wrong", icon=":material/analytics:")
    st.page_link("pages/learn.py", label="Follow your digit through the network", icon=":material/school:")
with right:
    st.markdown("**Train your own**")
    st.page_link("pages/configure.py", label="1 · Pick a dataset and a preset, edit the layers", icon=":material/tune:")
    st.page_link("pages/train.py", label="2 · Train with live curves", icon=":material/model_training:")
    st.page_link("pages/models.py", label="3 · Compare, download or upload models", icon=":material/inventory_2:")
    st.markdown("**Your own classes**")
    st.page_link("pages/classes.py", label="Draw, photograph or upload examples of your own classes and train on "
                 "them in seconds", icon=":material/category:")

st.subheader("Active model")
info = chrome.active_model_info()
if info is None:
    st.info("No saved model yet. Go to **Configure** and **Train** to make one — the embedded MNIST sample "
            "works offline.")
else:
    cols = st.columns(4)
    cols[0].metric("Model", info.name)
    cols[1].metric("Test accuracy", accuracy_text(info.test_accuracy))
    cols[2].metric("Parameters", f"{info.params:,}")
    cols[3].metric("Epochs", info.epochs)
    dataset = dataset_title(info.dataset)
    shape = "×".join(map(str, info.input_shape))
    st.caption(f"Preset **{info.preset}** · trained on **{dataset}** · input {shape} · "
               f"{len(info.class_names)} classes · created {date_text(info.created)}")
