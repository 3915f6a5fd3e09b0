"""Widgets and layout pieces several pages draw: unit pickers, scrolling coloured text, legends."""
from __future__ import annotations

import streamlit as st

from ui.state import keep_choice, keep_in_range


def unit_controls(ctx, kinds: list[str] | None = None) -> None:
    """Layer (and state kind) and unit pickers shared by Activations and Gates."""
    ui_layers = list(range(ctx.layers))
    keep_choice("layer", ui_layers, ctx.layers - 1)
    keep_in_range("unit", 0, ctx.hidden - 1, 0)
    cols = st.columns(3 if kinds else 2)
    cols[0].selectbox("Layer", ui_layers, key="layer", format_func=lambda l: f"layer {l}")
    cols[1].number_input(f"Unit (0 to {ctx.hidden - 1})", 0, ctx.hidden - 1, step=1, key="unit")
    if kinds:
        keep_choice("kind", kinds, "h")
        cols[2].selectbox("State", kinds, key="kind",
                          format_func=lambda k: {"h": "h (hidden state)", "c": "c (cell state)"}.get(k, k))
    return None


def scroll_html(html: str, height: int = 300, text: str | None = None) -> None:
    """Escaped coloured-text HTML in a scrolling box of at most `height` px (long texts stay compact);
    given the text, a short one gets a box just tall enough."""
    if text is not None:
        lines = sum(1 + len(line) // 100 for line in text.split("\n"))
        height = max(80, min(height, 26 * lines + 40))
    with st.container(height=height, border=False):
        st.html(html)


def legend_below(fig, title: str | None = None):
    """Move a figure's legend under the plot (charts in narrow columns keep their width)."""
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0))
    if title:
        fig.update_layout(title=title)
    return fig


def job_progress(job, cancel_key: str, starting: str) -> bool:
    """While a background job runs: its progress bar and a Cancel button. True while it runs."""
    if not job.running:
        return False
    snap = job.snapshot()
    done, total = snap.get("done") or 0, snap.get("total") or 1
    st.progress(min(1.0, done / total), text=str(snap.get("message") or starting))
    if st.button("Cancel", key=cancel_key, icon=":material/stop:"):
        job.stop()
    return True
