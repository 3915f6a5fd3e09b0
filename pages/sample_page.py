"""Sample: generate text at a temperature, coloured by confidence; temperatures compared; clamp a unit; steer
with a dictionary's feature."""
import streamlit as st

import ui
from rnnviz import plots, sampling
from ui import sample as sui


def main():
    ctx = ui.require_model()
    st.title("Sample")
    # every control here reruns and redraws only this page's body, never the sidebar
    st.fragment(lambda: ui.guard(body, ctx))()


def body(ctx):
    ss = st.session_state
    sui.steer_notice(ctx)
    sui.controls(ctx)
    top_k = int(ss["top_k"]) or None
    args = (ctx.key, ss["prime"], int(ss["length"]), float(ss["temperature"]), top_k, int(ss["seed"]))
    s = sui.generate(*args, None, _model=ctx.model)
    if s.unknown:
        st.info("The prime holds characters the model never saw (read as the unknown symbol): "
                + ", ".join(repr(c) for c in sorted(s.unknown)), icon=":material/info:")
    st.caption("Each generated character is shaded by the probability it had when it was drawn: dark green = "
               "the model was sure, white = a surprise. Hover for the value and the dice roll that drew it.")
    sui.show(s, f"Generated at temperature {ss['temperature']:.2f}" + (f", top-{top_k}" if top_k else ""))
    sui.dice(s, float(ss["temperature"]), top_k)

    st.subheader("One choice at several temperatures")
    ui.keep_in_range("dist_pos", 0, max(0, len(s.text) - 1), 0)
    if len(s.text) > 1:
        st.slider("Position in the generated text", 0, len(s.text) - 1, key="dist_pos")
    pos = int(ss.get("dist_pos", 0))
    st.caption(sampling.choice_caption(s, sampling.start_text(ctx.model.vocab, ss["prime"]), pos))
    temps = sampling.compared_temperatures(ss["temperature"])
    # the model's own log-probabilities at that step: the distribution at T = 1
    st.plotly_chart(plots.temperature_distributions(s.logp[pos], list(ctx.model.vocab.chars), temperatures=temps),
                    key="temp_dist", config={"displaylogo": False})

    clamp = sui.clamp_controls(ctx)
    if clamp is not None:
        sui.clamped(ctx, s, args, clamp)
    steering = sui.steer_controls(ctx)
    if steering is not None:
        sui.steered(ctx, s, args, steering)


ui.run_page(main)
