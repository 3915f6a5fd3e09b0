"""Step-by-step recurrent cells written from the textbook equations, in float64 numpy.

Independent of rnnviz: they read raw weights from a state dict by PyTorch's documented
names and gate order (LSTM: i, f, g, o; GRU: r, z, n), and loop over time one step at a time.
"""
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def weights(state_dict, layer):
    g = lambda k: state_dict[f"rnn.{k}_l{layer}"].detach().double().cpu().numpy()
    return g("weight_ih"), g("weight_hh"), g("bias_ih"), g("bias_hh")


def lstm_layer(x, W_ih, W_hh, b_ih, b_hh, h0=None, c0=None):
    H = W_hh.shape[1]
    h = np.zeros(H) if h0 is None else h0
    c = np.zeros(H) if c0 is None else c0
    out = {k: [] for k in "hcifgo"}
    for x_t in x:
        a = W_ih @ x_t + b_ih + W_hh @ h + b_hh
        i, f, g, o = sigmoid(a[:H]), sigmoid(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sigmoid(a[3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        for k, v in zip("hcifgo", (h, c, i, f, g, o)):
            out[k].append(v)
    return {k: np.array(v) for k, v in out.items()}


def gru_layer(x, W_ih, W_hh, b_ih, b_hh, h0=None):
    H = W_hh.shape[1]
    h = np.zeros(H) if h0 is None else h0
    out = {k: [] for k in "hrzn"}
    for x_t in x:
        gi, gh = W_ih @ x_t + b_ih, W_hh @ h + b_hh
        r = sigmoid(gi[:H] + gh[:H])
        z = sigmoid(gi[H:2 * H] + gh[H:2 * H])
        n = np.tanh(gi[2 * H:] + r * gh[2 * H:])
        h = (1 - z) * n + z * h
        for k, v in zip("hrzn", (h, r, z, n)):
            out[k].append(v)
    return {k: np.array(v) for k, v in out.items()}


def rnn_layer(x, W_ih, W_hh, b_ih, b_hh, h0=None):
    h = np.zeros(W_hh.shape[1]) if h0 is None else h0
    hs, pres = [], []
    for x_t in x:
        pre = W_ih @ x_t + b_ih + W_hh @ h + b_hh
        h = np.tanh(pre)
        hs.append(h)
        pres.append(pre)
    return {"h": np.array(hs), "pre": np.array(pres)}


LAYER = {"lstm": lstm_layer, "gru": gru_layer, "rnn": rnn_layer}


def forward(state_dict, cell, num_layers, ids):
    """Per-layer internals and logits (T, V) of a CharRNN state dict over ids."""
    x = state_dict["embed.weight"].detach().double().cpu().numpy()[ids]
    layers = []
    for l in range(num_layers):
        out = LAYER[cell](x, *weights(state_dict, l))
        layers.append(out)
        x = out["h"]
    W = state_dict["head.weight"].detach().double().cpu().numpy()
    b = state_dict["head.bias"].detach().double().cpu().numpy()
    return layers, x @ W.T + b


# --- issue 28: splices, one layer's h or c replaced (tests/test_features.py) ---------------------------

def replaced_layer(cell, x, W_ih, W_hh, b_ih, b_hh, kind, replace):
    """One layer step by step with its `kind` (h, or an LSTM's c) replaced by replace(v) at every step:
    the next step and the layer above read the replaced value; for c, h_t = o_t * tanh(replace(c_t))."""
    H = W_hh.shape[1]
    h, c, hs = np.zeros(H), np.zeros(H), []
    for x_t in x:
        if cell == "lstm":
            a = W_ih @ x_t + b_ih + W_hh @ h + b_hh
            i, f, g, o = sigmoid(a[:H]), sigmoid(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sigmoid(a[3 * H:])
            c = f * c + i * g
            if kind == "c":
                c = replace(c)
            h = o * np.tanh(c)
        elif cell == "gru":
            gi, gh = W_ih @ x_t + b_ih, W_hh @ h + b_hh
            r, z = sigmoid(gi[:H] + gh[:H]), sigmoid(gi[H:2 * H] + gh[H:2 * H])
            h = (1 - z) * np.tanh(gi[2 * H:] + r * gh[2 * H:]) + z * h
        else:
            h = np.tanh(W_ih @ x_t + b_ih + W_hh @ h + b_hh)
        if kind == "h":
            h = replace(h)
        hs.append(h)
    return np.array(hs)


def spliced_forward(state_dict, cell, num_layers, ids, layer, kind, mode, replace):
    """Logits (T, V) with layer `layer`'s `kind` replaced by replace(v) ((H,) -> (H,)). mode 'out': the
    layer runs on its true states and only its reader (the layer above, or the head) sees the replaced
    value (for c: o_t * tanh(replace(c_t))); mode 'rec': replaced_layer, inside the recurrence."""
    x = state_dict["embed.weight"].detach().double().cpu().numpy()[ids]
    for l in range(num_layers):
        W = weights(state_dict, l)
        if l != layer:
            x = LAYER[cell](x, *W)["h"]
        elif mode == "rec":
            x = replaced_layer(cell, x, *W, kind, replace)
        else:
            out = LAYER[cell](x, *W)
            rep = np.array([replace(v) for v in out[kind]])
            x = rep if kind == "h" else out["o"] * np.tanh(rep)
    W = state_dict["head.weight"].detach().double().cpu().numpy()
    b = state_dict["head.bias"].detach().double().cpu().numpy()
    return x @ W.T + b


def next_char_loss(logits, ids):
    """Surprisal (T,) in nats of each next character; NaN at the last position."""
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    out = np.full(len(ids), np.nan)
    out[:-1] = -logp[np.arange(len(ids) - 1), ids[1:]]
    return out


def edited_forward(state_dict, cell, num_layers, ids, edits=()):
    """Logits (T, V) and per-layer stored {"h", "c"} (T, H) with stored values set after a layer's step:
    edits [(layer, state, unit, pos, value)]. The layer above at pos reads the set h; the next step of
    the layer reads the set h or c; setting c leaves h at pos as computed (issue 27's zero ablation at value 0)."""
    x = state_dict["embed.weight"].detach().double().cpu().numpy()[ids]
    at = {}
    for l, st, u, s, v in edits:
        at.setdefault((l, s), []).append((st, u, v))
    layers = []
    for l in range(num_layers):
        W_ih, W_hh, b_ih, b_hh = weights(state_dict, l)
        H = W_hh.shape[1]
        h, c = np.zeros(H), np.zeros(H)
        hs, cs = [], []
        for s, x_t in enumerate(x):
            if cell == "lstm":
                a = W_ih @ x_t + b_ih + W_hh @ h + b_hh
                i, f, g, o = sigmoid(a[:H]), sigmoid(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sigmoid(a[3 * H:])
                c = f * c + i * g
                h = o * np.tanh(c)
            elif cell == "gru":
                gi, gh = W_ih @ x_t + b_ih, W_hh @ h + b_hh
                r, z = sigmoid(gi[:H] + gh[:H]), sigmoid(gi[H:2 * H] + gh[H:2 * H])
                h = (1 - z) * np.tanh(gi[2 * H:] + r * gh[2 * H:]) + z * h
            else:
                h = np.tanh(W_ih @ x_t + b_ih + W_hh @ h + b_hh)
            h, c = h.copy(), c.copy()
            for st, u, v in at.get((l, s), ()):
                (h if st == "h" else c)[u] = v
            hs.append(h)
            cs.append(c)
        layers.append({"h": np.array(hs), "c": np.array(cs)})
        x = layers[-1]["h"]
    W = state_dict["head.weight"].detach().double().cpu().numpy()
    b = state_dict["head.bias"].detach().double().cpu().numpy()
    return layers, x @ W.T + b


def log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))
