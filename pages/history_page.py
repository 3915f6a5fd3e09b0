"""Training history (being built)."""
import streamlit as st

st.title("Training history")
st.info("This page is being built.")
