"""Learn: coming with issue [5 of 5]."""
import streamlit as st

st.title("🎓 Learn")
st.info("Coming soon: follow your own drawing through convolution, ReLU, pooling, dense layers and softmax, "
        "computed live with the active model's weights.")
