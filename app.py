"""rnnviz: see inside character-level LSTM, GRU and vanilla RNN language models.

Run with `streamlit run app.py`. This file holds the navigation and the shared sidebar (model
picker, model card, device, text under study); each page in pages/ handles one concern.
"""
import logging

import streamlit as st

import ui
from ui import tour as tour_ui

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

st.set_page_config(page_title="rnnviz", page_icon=":material/blur_on:", layout="wide")

ui.init_state()
ui.guard(ui.sync_jobs)

pages = {url: st.Page(path, title=title, icon=icon, url_path=url, default=(i == 0))
         for i, (path, title, icon, url) in enumerate(ui.PAGES)}
home = pages[ui.PAGES[0][3]]
# Home is served at "/"; /home is a hidden alias that sends a typed or bookmarked link there.
home_alias = st.Page(lambda: st.switch_page(home), title="Home", url_path="home", visibility="hidden")
sections = {name: [pages[url] for url in urls] for name, urls in ui.SECTIONS.items()}
sections[next(iter(sections))].append(home_alias)
# expanded: Streamlit otherwise folds a menu of more than 12 pages behind "View N more" whenever the
# sidebar holds anything below it (ours holds the model picker), hiding pages on a projector's screen.
page = st.navigation(sections, expanded=True)
# Nineteen pages in five sections: tighter links keep every one in sight on a projector's 1280×800
# (tests/test_sections_browser.py checks it). In the sidebar, so the pages' own elements stay as they were.
st.sidebar.markdown("<style>[data-testid='stSidebarNavLink']{min-height:0;height:1.6rem;line-height:1.6rem;"
                    "margin:0;padding-top:0;padding-bottom:0;}</style>", unsafe_allow_html=True)
goto = st.session_state.pop("_goto", None)
if goto:  # a button's callback chose a page (a callback itself cannot switch pages)
    st.switch_page(goto)

with st.sidebar:
    ui.guard(ui.sidebar)

if st.session_state.get("_toast"):
    st.toast(st.session_state.pop("_toast"), icon=":material/check_circle:")

ui.guard(tour_ui.banner)  # the guided tour's stop and its Next button, on every page while it runs
page.run()
