"""Why this character? (being built)."""
import streamlit as st

st.title("Why this character?")
st.info("This page is being built.")
