"""How it was computed: the units and steps that carry one prediction, each checked by zeroing it and rerunning."""
import streamlit as st

import ui
from rnnviz import plots
from rnnviz.plots.circuits import node_label
from ui import cell as cell_ui
from ui import circuit as circuit_ui

CHART = {"displaylogo": False}
INTRO = """
Which units, at which earlier steps, carry the model's log *p(c)* for the character after position *t*? A **node**
is one unit's hidden state *h*, or an LSTM's cell state *c*, after one step. Every node within reach gets an
**attribution**, an estimate of what zeroing it would do; the strongest are kept, and each is then zeroed and the
model rerun from that step: its **ablation**, the exact change in log *p(c)*.
"""
HONESTY = ("**Coverage**: the share of the total |attribution| of every node within reach that the kept nodes hold "
           "(units share the work, so much of it is spread thin over many nodes). **r²**: the squared correlation, "
           "over the kept nodes, between attribution and measured ablation; near 1, the estimates rank the nodes as "
           "the reruns do. **Slope**: the least-squares slope of ablation on attribution (through 0); above 1, the "
           "estimates understate the real effects, below 1 they overstate them.")


def target_controls(ctx, text: str, t_def: int, how: str):
    circuit_ui.prepare(ctx.key, text, t_def)
    c1, c2, c3, c4, c5 = st.columns([2, 2, 1, 1, 2])
    c1.number_input(f"Target position t (1 to {len(text) - 1})", 1, len(text) - 1, step=1, key="circuit_t")
    c2.text_input("Character c (empty: the true next one)", key="circuit_char", max_chars=1,
                  help="At the text's last character, where no next one is written: the model's top prediction.")
    c3.number_input("Steps back", 5, circuit_ui.BACK, step=5, key="circuit_back")
    c4.number_input("Nodes", 5, circuit_ui.NODES, step=5, key="circuit_nodes")
    c5.button("The default target", key="circuit_reset", on_click=circuit_ui.set_target, args=(t_def,),
              icon=":material/restart_alt:", help=f"t = {t_def}: {how}")
    ss = st.session_state
    return int(ss["circuit_t"]), ss["circuit_char"] or "", int(ss["circuit_back"]), int(ss["circuit_nodes"])


def figures_up_front(ctx, text, circ, args):
    target = circ.target
    st.markdown(circuit_ui.story(ctx.key, text, *args, _model=ctx.model))
    c = st.columns(5)
    c[0].metric(f"log p({circuit_ui.quoted(target['char'])}) after #{target['pos']}", f"{target['logp']:.3f}")
    c[1].metric("nodes", f"{len(circ.nodes)}", help=f"Scored {circ.back} steps back by {circuit_ui.method_words(circ)}")
    c[2].metric("coverage", circuit_ui.figure(circ.coverage, ".0%"))
    c[3].metric("r²", circuit_ui.figure(circ.r2, ".2f"))
    c[4].metric("slope", circuit_ui.figure(circ.slope, ".2f"))
    st.caption(HONESTY)
    note = circuit_ui.honesty_note(circ)
    if note:
        st.warning(note, icon=":material/warning:")


def graph(ctx, text, circ, own_text: bool):
    ss = st.session_state
    chosen = ss.get("_circuit_node")
    st.plotly_chart(plots.circuit_graph(circ, text, selected=chosen), key="circuit_graph", config=CHART,
                    on_select=lambda: circuit_ui.on_click(circ), selection_mode="points")
    rows = ("each layer's cell states c (diamonds, on the yellow belt) above its hidden states h (circles)"
            if ctx.cell == "lstm" else "layer by layer, lowest first")
    st.caption(f"x: the characters read, left to right; the star at the right is the prediction. y: one row per unit "
               f"that appears, {rows}. Size: |ablation|. Red: zeroing the node lowers log p(c) (it carries c); blue: "
               "zeroing it raises log p(c). Lines: each node's two strongest incoming edges, an earlier node's part "
               "in a later node's value (the value less its value with the earlier node zeroed), wider for a larger "
               "part: grey where it carries the value, purple where it pushes against it. Hover a node for its "
               "attribution beside its measured ablation; click it to study it below.")
    target = circ.target
    node = circuit_ui.far_node(circ) if ctx.cell == "lstm" else None  # only an LSTM has a belt
    if node is not None:
        path = circuit_ui.memory_path(ctx.key, text, target["pos"], target["char"], node.layer, node.unit,
                                      node.pos, _model=ctx.model)
        st.markdown(f"**The memory path** ({node_label(node)}): {path['words']}")
    if isinstance(chosen, int) and chosen < len(circ.nodes):
        n = circ.nodes[chosen]
        c1, c2, c3 = st.columns([3, 2, 2])
        c1.markdown(f"**{node_label(n)}**: value {n.value:+.3f}, attribution {n.attribution:+.3f}, "
                    f"ablation (measured) {n.ablation:+.3f}")
        if own_text:  # Inside the cell reads the sidebar's text, not a passage opened from the dashboard
            cell_ui.link(n.layer, n.unit, n.pos, key="circuit_to_cell", kind=n.state, where=c2,
                         help=f"L{n.layer} unit {n.unit}'s step at #{n.pos}, gate by gate")
        c3.button(f"Unit dashboard of L{n.layer} {n.state}{n.unit}", key="circuit_to_unit", icon=":material/dashboard:",
                  on_click=circuit_ui.open_dashboard, args=(n.layer, n.state, n.unit))


def intervene_box(ctx, text, circ):
    ss = st.session_state
    st.subheader("Intervene: set a unit to a value and rerun")
    t, char = circ.target["pos"], circ.target["char"]
    st.selectbox("Start from a node of the graph (or click one)", list(range(len(circ.nodes))), index=None,
                 key="circuit_pick", on_change=circuit_ui.on_pick, args=(circ,), placeholder="a node ...",
                 format_func=lambda i: f"{node_label(circ.nodes[i])} (ablation {circ.nodes[i].ablation:+.3f})")
    c = st.columns(6)
    c[0].number_input("Layer", 0, ctx.layers - 1, step=1, key="circuit_layer")
    c[1].selectbox("State", ["h", "c"] if ctx.cell == "lstm" else ["h"], key="circuit_state")
    c[2].number_input("Unit", 0, ctx.hidden - 1, step=1, key="circuit_unit")
    c[3].number_input("From position", 0, t, step=1, key="circuit_from")
    c[4].number_input("To position", int(ss["circuit_from"]), t, step=1, key="circuit_to")
    c[5].number_input("Value", -1e3, 1e3, step=0.1, format="%.3f", key="circuit_value")
    args = (int(ss["circuit_layer"]), ss["circuit_state"], int(ss["circuit_unit"]), int(ss["circuit_from"]),
            int(ss["circuit_to"]), float(ss["circuit_value"]))
    out = circuit_ui.intervene(ctx.key, text, t, char, *args, _model=ctx.model)
    layer, state, unit, first, last, value = args
    span = f"#{first}" if first == last else f"#{first} to #{last}"
    m = st.columns(3)
    m[0].metric(f"log p({circuit_ui.quoted(char)}) before", f"{out['logp_before']:.3f}")
    m[1].metric(f"after L{layer} {state}{unit} = {value:g} at {span}", f"{out['logp_after']:.3f}",
                delta=f"{out['logp_after'] - out['logp_before']:+.3f}")
    st.plotly_chart(plots.intervention_bars(out["probs_before"], out["probs_after"], ctx.model.vocab.chars, char),
                    key="circuit_bars", config=CHART)
    st.caption("Grey: the next-character distribution after #"
               f"{t} in the normal run; red: with the unit set to the value at each of those positions (each set "
               "after its layer's step, so the layer above and the next step read it). The target is outlined.")


def main():
    ctx = ui.require_model()
    if circuit_ui.open_story_model(ctx):
        st.rerun()
    st.title("How it was computed")
    st.markdown(INTRO)
    was = st.session_state.pop("_circuit_switched", None)
    if was:
        st.info(f"This page opened on {circuit_ui.STORY_MODEL}, the model of its story (a closing quote), instead "
                f"of {was}; any model in the sidebar works here.", icon=":material/info:")
    text, own = circuit_ui.text_panel(ctx)
    if len(text) < 3:
        st.warning("The text needs at least three characters.", icon=":material/warning:")
        return
    t_def, how = circuit_ui.default_target(ctx.key, text, circuit_ui.reads_code(ctx.config), _model=ctx.model)
    story, chooser = st.container(), st.container()  # the story first; its target's widgets are read before it
    with chooser:
        st.subheader("Another prediction")
        args = target_controls(ctx, text, t_def, how)
        st.caption(f"The page opened on t = {t_def}: {how}.")
    circ = circuit_ui.circuit(ctx.key, text, *args, _model=ctx.model)
    circuit_ui.prepare_box(circ, ctx.cell, ctx.layers, ctx.hidden)
    with story:
        figures_up_front(ctx, text, circ, args)
        graph(ctx, text, circ, own_text=own)
    ui.guard(intervene_box, ctx, text, circ)


ui.run_page(main)
