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
