"""Warm a fresh server before students arrive: one session opens the pages a class opens first.

`python -m rnnviz serve` runs `python -m ui.warmup URL` against each process it starts. The session speaks
Streamlit's own websocket protocol, as a browser tab does, so the models, traces, samples and gradient
curves a class shares are in the process's caches, and the app's pages are registered (a fresh process
answers a deep link with "page not found" until some session has run the app once).
"""
from __future__ import annotations

import asyncio
import sys

# The pages a class opens first (Home, then the tour's and the lesson's pages), by URL path; "" is Home.
PAGES = ("", "activations", "sample", "gradients", "cell")


async def _run(ws, page: str, pages: dict[str, str], timeout: float) -> str:
    """Open one page with its default widgets; '' if it drew without an error, else what went wrong."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    msg = BackMsg()
    if pages:
        msg.rerun_script.page_script_hash = pages.get(page, pages[""])
    else:
        msg.rerun_script.page_name = page
    await ws.send(msg.SerializeToString())
    problems = []
    while True:
        fm = ForwardMsg()
        fm.ParseFromString(await asyncio.wait_for(ws.recv(), timeout))
        kind = fm.WhichOneof("type")
        if kind == "navigation":
            pages.update({p.url_pathname: p.page_script_hash for p in fm.navigation.app_pages})
            pages[""] = next((p.page_script_hash for p in fm.navigation.app_pages if p.is_default), "")
        elif kind == "page_not_found":
            problems.append("page not found")
        elif kind == "delta" and fm.delta.new_element.WhichOneof("type") == "exception":
            problems.append(fm.delta.new_element.exception.message[:200])
        elif kind == "script_finished":
            return "; ".join(problems)


async def warm(url: str, pages=PAGES, timeout: float = 300) -> dict[str, str]:
    """Open each page in turn in one session of the server at `url`; page -> '' or what went wrong."""
    import websockets

    known: dict[str, str] = {}
    out = {}
    async with websockets.connect(url.rstrip("/").replace("http://", "ws://") + "/_stcore/stream",
                                  subprotocols=["streamlit"], max_size=None, open_timeout=timeout,
                                  ping_interval=None) as ws:
        for page in pages:
            out[page] = await _run(ws, page, known, timeout)
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m ui.warmup URL [PAGE ...]", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(warm(argv[0], tuple(argv[1:]) or PAGES))
    except Exception as e:  # a server that went away: the caller serves anyway, and says so
        print(f"warm-up of {argv[0]} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    bad = {p or "home": why for p, why in result.items() if why}
    for page, why in bad.items():
        print(f"warm-up of {argv[0]}: {page}: {why}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
