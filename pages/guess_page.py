"""Guessing game (being built)."""
import streamlit as st

st.title("Guessing game")
st.info("This page is being built.")
