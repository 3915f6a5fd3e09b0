"""rnnviz: see inside character-level LSTM, GRU and vanilla RNN language models.

Run with `streamlit run app.py`. This file holds the navigation and the shared sidebar (model
picker, model card, device, text under study); each page in pages/ handles one concern.
"""
import logging

import streamlit as st

import ui

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

st.set_page_config(page_title="rnnviz", page_icon=":material/blur_on:", layout="wide")

ui.init_state()
ui.guard(ui.sync_jobs)

pages = [st.Page(path, title=title, icon=icon, url_path=url, default=(i == 0))
         for i, (path, title, icon, url) in enumerate(ui.PAGES)]
page = st.navigation(pages)

with st.sidebar:
    ui.guard(ui.sidebar)

if st.session_state.get("_toast"):
    st.toast(st.session_state.pop("_toast"), icon=":material/check_circle:")

page.run()
