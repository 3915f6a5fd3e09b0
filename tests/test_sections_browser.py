"""The sidebar's sections: every page under the heading of what a person came to do, and, in a real Chromium
at a projector's 1280×800, each page reached by a click on its link there, nothing behind "View more".

Screenshots: artifacts/screenshots/sections-<url>.png (git-ignored), the viewport as a person sees it.
"""
import os
import re
from pathlib import Path

import pytest

import ui
from streamlit_server import no_errors
from test_browser import SHOTS, _settle, browser_page, server  # noqa: F401, F811 (server: the fixture)

# The grouping issue 25 asked for, by page title: the reference the app's sections are checked against.
WANT = {
    "Learn": ["Home", "Gradients", "Guessing game", "The 2015 paper"],
    "Look inside": ["Activations", "Gates", "Inside the cell", "Sample"],
    "Find units": ["Neuron search", "Unit atlas", "Unit dashboard", "Select and match", "Features", "Feature dashboard"],
    "Explain": ["Why this character?", "How it was computed", "Compare"],
    "Train": ["Train", "Training history"],
}
TITLES = {url: title for _, title, _, url in ui.PAGES}
SCREEN = {"width": 1280, "height": 800}
SHOTS_DIR = Path(os.environ.get("RNNVIZ_SECTION_SHOTS") or SHOTS)


def test_every_page_sits_in_exactly_one_section():
    listed = [url for urls in ui.SECTIONS.values() for url in urls]
    assert sorted(listed) == sorted(TITLES), "a page missing from the sections, or listed twice"
    assert {name: [TITLES[u] for u in urls] for name, urls in ui.SECTIONS.items()} == WANT
    assert list(ui.SECTIONS) == list(WANT)  # the sidebar's order, top to bottom
    assert ui.SECTIONS["Learn"][0] == ui.PAGES[0][3]  # Home, the default page, heads the first section


def _nav_tree(page) -> dict[str, list[str]]:
    """The sidebar's navigation as drawn: section heading -> the link texts under it, in order."""
    return page.evaluate("""() => {
        const nav = document.querySelector('[data-testid="stSidebarNav"]');
        const out = {}; let section = null;
        for (const el of nav.querySelectorAll('[data-testid="stNavSectionHeader"], [data-testid="stSidebarNavLink"]')) {
            if (el.dataset.testid === 'stNavSectionHeader') { section = el.innerText.trim(); out[section] = []; }
            else out[section].push(el.innerText.trim().split('\\n').pop());  // the title, not the icon's name
        }
        return out;
    }""")


def _hidden_links(page) -> list[str]:
    """Links of the sidebar's navigation that a person cannot see without scrolling (or at all)."""
    return page.evaluate(f"""() => {{
        const side = document.querySelector('[data-testid="stSidebarContent"]');
        const box = side.getBoundingClientRect();
        const bottom = Math.min(box.bottom, {SCREEN["height"]});
        return [...document.querySelectorAll('[data-testid="stSidebarNavLink"]')]
            .filter(a => {{ const r = a.getBoundingClientRect();
                           return r.height === 0 || r.top < box.top || r.bottom > bottom; }})
            .map(a => a.innerText.trim().split('\\n').pop());
    }}""")




@pytest.mark.browser
@pytest.mark.slow
def test_every_page_by_its_link_under_its_section_at_1280x800(server):
    url, log = server
    SHOTS_DIR.mkdir(parents=True, exist_ok=True)
    with browser_page(log) as page:
        page.set_viewport_size(SCREEN)
        page.goto(url, wait_until="domcontentloaded")
        _settle(page, 0)
        assert _nav_tree(page) == WANT  # every page under its heading; the /home alias stays hidden
        for section, titles in WANT.items():
            for title in titles:
                url_path = next(u for u, t in TITLES.items() if t == title)
                nav = page.locator('[data-testid="stSidebarNav"]')
                assert page.locator('[data-testid="stSidebarNavViewButton"]').count() == 0
                assert nav.get_by_text(re.compile(r"^View (\d+ more|less)$")).count() == 0
                assert _hidden_links(page) == [], f"{title}: links out of sight at 1280×800"
                link = nav.locator('[data-testid="stSidebarNavLink"]').filter(has=page.get_by_text(title, exact=True))
                link.click()
                want = url if url_path == ui.PAGES[0][3] else f"{url}/{url_path}"  # Home is served at "/"
                page.wait_for_url(lambda u: u.split("?")[0].rstrip("/") == want, timeout=60_000)
                _settle(page, 0)
                no_errors(page, f"{section} / {title}")
                assert page.get_by_text("Page not found").count() == 0, title
                assert page.locator('[data-testid="stMain"] h1').count() >= 1, f"{title}: no page title drawn"
                current = nav.locator('[data-testid="stSidebarNavLink"][aria-current="page"]')
                assert current.inner_text().strip().split("\n")[-1] == title  # the link clicked is the page shown
                page.screenshot(path=str(SHOTS_DIR / f"sections-{url_path}.png"))
