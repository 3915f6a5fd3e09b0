"""Imported models (rnnviz.interop) against their own frameworks: PyTorch modules written as the tutorials
write them, d2l's models as the chapter writes them, and min-char-rnn's forward from its equations.
Each source's next-character probabilities must equal the imported model's (rnnviz.trace) within 1e-5."""
import hashlib
from pathlib import Path
import json
import re
import string
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnviz import checkpoint
from rnnviz.cli import main as cli_main
from rnnviz.interop import ImportRefused, import_model
from rnnviz.interop.parts import UNDERFLOW_MARGIN
from rnnviz.trace import trace
from rnnviz.vocab import UNK

TEXT = "To be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n"
TOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def randomize(module: nn.Module, seed: int, std: float = 0.4) -> nn.Module:
    """Weights far from the tiny initialisations, so that a misplaced gate or transpose shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return module.eval()


def imported_probs(out, tokens: list[str], text: str) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities of the imported model in the source's id order (T, V), of its unknown symbol (T,))."""
    model, _ = checkpoint.load(out)
    tr = trace(model, text)
    ours = [0 if t in ("<unk>", UNK) else model.vocab.index[t] for t in tokens]
    return tr.probs[:, ours], tr.probs[:, 0]


def save_vocab(tmp_path, tokens) -> str:
    path = tmp_path / "vocab.json"
    path.write_text(json.dumps(tokens))
    return str(path)


# ---------------------------------------------------------------- PyTorch's char-RNN example

class TutorialRNN(nn.Module):
    """The char-RNN of PyTorch's practical tutorials (encoder, rnn, decoder), fed one character at a time."""

    def __init__(self, input_size, hidden_size, output_size, model="gru", n_layers=1):
        super().__init__()
        self.model, self.hidden_size, self.n_layers = model.lower(), hidden_size, n_layers
        self.encoder = nn.Embedding(input_size, hidden_size)
        self.rnn = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[self.model](hidden_size, hidden_size, n_layers)
        self.decoder = nn.Linear(hidden_size, output_size)

    def forward(self, input, hidden):
        batch_size = input.size(0)
        encoded = self.encoder(input)
        output, hidden = self.rnn(encoded.view(1, batch_size, -1), hidden)
        output = self.decoder(output.view(batch_size, -1))
        return output, hidden

    def init_hidden(self, batch_size):
        h = torch.zeros(self.n_layers, batch_size, self.hidden_size)
        return (h, h.clone()) if self.model == "lstm" else h


def tutorial_probs(net: TutorialRNN, ids: list[int]) -> np.ndarray:
    hidden, out = net.init_hidden(1), []
    with torch.no_grad():
        for i in ids:
            logits, hidden = net(torch.tensor([i]), hidden)
            out.append(torch.softmax(logits[0].double(), -1).numpy())
    return np.array(out)


@pytest.mark.parametrize("cell,layers", [("lstm", 1), ("gru", 2), ("rnn", 3)])
def test_pytorch_tutorial_char_rnn(tmp_path, cell, layers):
    chars = list(string.printable)  # the tutorial's all_characters, in its order
    net = randomize(TutorialRNN(len(chars), 12, len(chars), cell, layers), seed=layers)
    torch.save(net.state_dict(), tmp_path / "char-rnn.pt")
    out = import_model(tmp_path / "char-rnn.pt", tmp_path / "m", vocab=save_vocab(tmp_path, chars))
    ours, unk = imported_probs(out, chars, TEXT)
    theirs = tutorial_probs(net, [chars.index(c) for c in TEXT])
    assert np.abs(ours - theirs).max() < TOL
    assert (unk == 0).all()  # the added unknown symbol takes nothing from the model's characters
    config = checkpoint.read_config(out)
    assert config["model"]["cell"] == cell and config["model"]["num_layers"] == layers
    assert config["model"]["vocab"] == [UNK] + chars
    assert config["imported"]["source_format"] == "pytorch-state-dict"
    assert any("encoder.weight -> embed.weight" in c for c in config["imported"]["conversions"])


class BatchFirstLM(nn.Module):
    """The other common shape: an embedding narrower than the state, batch_first, a head called `fc`."""

    def __init__(self, V, E, H, L, cell):
        super().__init__()
        self.embedding = nn.Embedding(V, E)
        self.lstm = {"gru": nn.GRU, "lstm": nn.LSTM, "rnn": nn.RNN}[cell](E, H, L, batch_first=True)
        self.fc = nn.Linear(H, V)

    def forward(self, x):
        out, _ = self.lstm(self.embedding(x))
        return self.fc(out)


def test_pytorch_safetensors_and_a_dict_with_its_vocabulary(tmp_path):
    """A .safetensors state dict, and a torch.save'd dict holding the state dict, the characters and an
    epoch count: the vocabulary comes from the file itself."""
    from safetensors.torch import save_file

    chars = sorted(set(TEXT))
    net = randomize(BatchFirstLM(len(chars), 7, 10, 2, "lstm"), seed=5)
    with torch.no_grad():
        theirs = torch.softmax(net(torch.tensor([[chars.index(c) for c in TEXT]]))[0].double(), -1).numpy()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "lm.safetensors")
    torch.save({"epoch": 3, "model_state_dict": net.state_dict(), "chars": chars}, tmp_path / "ckpt.pth")
    torch.save({**net.state_dict(), "itos": chars, "loss": 1.5}, tmp_path / "flat.pt")  # weights beside other things
    for src, vocab in (("lm.safetensors", save_vocab(tmp_path, chars)), ("ckpt.pth", None), ("flat.pt", None)):
        out = import_model(tmp_path / src, tmp_path / f"m-{src}", vocab=vocab)
        ours, unk = imported_probs(out, chars, TEXT)
        assert np.abs(ours - theirs).max() < TOL, src
        assert (unk == 0).all()
    notices = checkpoint.read_config(tmp_path / "m-ckpt.pth")["imported"]["notices"]
    assert f"The vocabulary ({len(chars)} characters) comes from the file's 'chars' entry." in notices


# ---------------------------------------------------------------- d2l (Dive into Deep Learning, chapter 9)

def d2l_vocab(text: str) -> list[str]:
    """d2l.Vocab(tokens).idx_to_token for character tokens: '<unk>' sorted in among them."""
    return sorted(set(["<unk>"] + list(text)))


class D2lRNN(nn.Module):
    """d2l.RNN / d2l.GRU / d2l.LSTM: a torch layer kept as `self.rnn`."""

    def __init__(self, num_inputs, num_hiddens, kind="rnn", num_layers=1):
        super().__init__()
        layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind]
        self.rnn = layer(num_inputs, num_hiddens, num_layers) if kind == "gru" else layer(num_inputs, num_hiddens)

    def forward(self, inputs, H=None):
        return self.rnn(inputs, H)


class D2lRNNLM(nn.Module):
    """d2l.RNNLM: one-hot inputs, the rnn, then `self.linear` (a LazyLinear in the book)."""

    def __init__(self, rnn, num_hiddens, vocab_size):
        super().__init__()
        self.rnn, self.vocab_size = rnn, vocab_size
        self.linear = nn.Linear(num_hiddens, vocab_size)

    def one_hot(self, X):
        return F.one_hot(X.T, self.vocab_size).type(torch.float32)

    def output_layer(self, hiddens):
        return self.linear(hiddens).swapaxes(0, 1)

    def forward(self, X, state=None):
        embs = self.one_hot(X)
        rnn_outputs, _ = self.rnn(embs, state)
        return self.output_layer(rnn_outputs)


@pytest.mark.parametrize("kind,layers", [("rnn", 1), ("gru", 2), ("lstm", 1)])
def test_d2l_rnnlm(tmp_path, kind, layers):
    tokens = d2l_vocab(TEXT)
    V = len(tokens)
    net = randomize(D2lRNNLM(D2lRNN(V, 9, kind, layers), 9, V), seed=11)
    ids = torch.tensor([[tokens.index(c) for c in TEXT]])
    with torch.no_grad():
        theirs = torch.softmax(net(ids)[0].double(), -1).numpy()
    torch.save(net.state_dict(), tmp_path / "rnnlm.pt")
    out = import_model(tmp_path / "rnnlm.pt", tmp_path / "m", vocab=save_vocab(tmp_path, tokens))
    ours, _ = imported_probs(out, tokens, TEXT)
    # d2l's '<unk>' is rnnviz's unknown symbol: the model's own probability for it is kept too
    assert np.abs(ours - theirs).max() < TOL
    config = checkpoint.read_config(out)
    assert config["imported"]["source_format"] == "d2l-rnnlm"
    assert config["model"]["embed_size"] == V  # one-hot: the identity embedding
    assert any("one-hot input" in n for n in config["imported"]["notices"])


class RNNScratch(nn.Module):
    """d2l.RNNScratch, its forward as the chapter writes it."""

    def __init__(self, num_inputs, num_hiddens, sigma=0.01):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.W_xh = nn.Parameter(torch.randn(num_inputs, num_hiddens) * sigma)
        self.W_hh = nn.Parameter(torch.randn(num_hiddens, num_hiddens) * sigma)
        self.b_h = nn.Parameter(torch.zeros(num_hiddens))

    def forward(self, inputs, state=None):
        if state is None:
            state = torch.zeros((inputs.shape[1], self.num_hiddens))
        else:
            state, = state
        outputs = []
        for X in inputs:
            state = torch.tanh(torch.matmul(X, self.W_xh) + torch.matmul(state, self.W_hh) + self.b_h)
            outputs.append(state)
        return outputs, state


class StackedRNNScratch(nn.Module):
    """d2l.StackedRNNScratch: layers of RNNScratch in `self.rnns`."""

    def __init__(self, num_inputs, num_hiddens, num_layers, sigma=0.01):
        super().__init__()
        self.num_hiddens = num_hiddens
        self.rnns = nn.Sequential(*[RNNScratch(num_inputs if i == 0 else num_hiddens, num_hiddens, sigma)
                                    for i in range(num_layers)])

    def forward(self, inputs, Hs=None):
        outputs = inputs
        if Hs is None:
            Hs = [None] * len(self.rnns)
        for i in range(len(self.rnns)):
            outputs, Hs[i] = self.rnns[i](outputs, Hs[i])
            outputs = torch.stack(outputs, 0)
        return outputs, Hs


class LSTMScratch(nn.Module):
    """d2l.LSTMScratch: gates I, F, O and the input node C_tilde, each with its own W_x*, W_h*, b_*."""

    def __init__(self, num_inputs, num_hiddens, sigma=0.01):
        super().__init__()
        self.num_hiddens = num_hiddens
        init_weight = lambda *shape: nn.Parameter(torch.randn(*shape) * sigma)  # noqa: E731
        triple = lambda: (init_weight(num_inputs, num_hiddens), init_weight(num_hiddens, num_hiddens),  # noqa: E731
                          nn.Parameter(torch.zeros(num_hiddens)))
        self.W_xi, self.W_hi, self.b_i = triple()
        self.W_xf, self.W_hf, self.b_f = triple()
        self.W_xo, self.W_ho, self.b_o = triple()
        self.W_xc, self.W_hc, self.b_c = triple()

    def forward(self, inputs, H_C=None):
        if H_C is None:
            H = torch.zeros((inputs.shape[1], self.num_hiddens))
            C = torch.zeros((inputs.shape[1], self.num_hiddens))
        else:
            H, C = H_C
        outputs = []
        for X in inputs:
            I = torch.sigmoid(torch.matmul(X, self.W_xi) + torch.matmul(H, self.W_hi) + self.b_i)  # noqa: E741
            F_ = torch.sigmoid(torch.matmul(X, self.W_xf) + torch.matmul(H, self.W_hf) + self.b_f)
            O = torch.sigmoid(torch.matmul(X, self.W_xo) + torch.matmul(H, self.W_ho) + self.b_o)  # noqa: E741
            C_tilde = torch.tanh(torch.matmul(X, self.W_xc) + torch.matmul(H, self.W_hc) + self.b_c)
            C = F_ * C + I * C_tilde
            H = O * torch.tanh(C)
            outputs.append(H)
        return outputs, (H, C)


class RNNLMScratch(nn.Module):
    """d2l.RNNLMScratch: one-hot inputs, the scratch rnn, then H @ W_hq + b_q per step."""

    def __init__(self, rnn, vocab_size, sigma=0.01):
        super().__init__()
        self.rnn, self.vocab_size = rnn, vocab_size
        self.W_hq = nn.Parameter(torch.randn(rnn.num_hiddens, vocab_size) * sigma)
        self.b_q = nn.Parameter(torch.zeros(vocab_size))

    def one_hot(self, X):
        return F.one_hot(X.T, self.vocab_size).type(torch.float32)

    def output_layer(self, rnn_outputs):
        outputs = [torch.matmul(H, self.W_hq) + self.b_q for H in rnn_outputs]
        return torch.stack(outputs, 1)

    def forward(self, X, state=None):
        embs = self.one_hot(X)
        rnn_outputs, _ = self.rnn(embs, state)
        return self.output_layer(rnn_outputs)


@pytest.mark.parametrize("kind", ["rnn", "stacked3", "lstm"])
def test_d2l_scratch(tmp_path, kind):
    tokens = d2l_vocab(TEXT)
    V = len(tokens)
    rnn = {"rnn": lambda: RNNScratch(V, 10), "stacked3": lambda: StackedRNNScratch(V, 10, 3),
           "lstm": lambda: LSTMScratch(V, 10)}[kind]()
    net = randomize(RNNLMScratch(rnn, V), seed=3, std=0.5)
    with torch.no_grad():
        theirs = torch.softmax(net(torch.tensor([[tokens.index(c) for c in TEXT]]))[0].double(), -1).numpy()
    torch.save(net.state_dict(), tmp_path / "scratch.pt")
    out = import_model(tmp_path / "scratch.pt", tmp_path / "m", vocab=save_vocab(tmp_path, tokens))
    ours, _ = imported_probs(out, tokens, TEXT)
    assert np.abs(ours - theirs).max() < TOL
    config = checkpoint.read_config(out)
    assert config["imported"]["source_format"] == "d2l-scratch"
    assert config["model"]["num_layers"] == (3 if kind == "stacked3" else 1)
    assert config["model"]["cell"] == ("lstm" if kind == "lstm" else "rnn")


# ---------------------------------------------------------------- min-char-rnn

def minchar_weights(chars, hidden=20, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    V = len(chars)
    return {"Wxh": rng.normal(size=(hidden, V)) * scale, "Whh": rng.normal(size=(hidden, hidden)) * scale,
            "Why": rng.normal(size=(V, hidden)) * scale, "bh": rng.normal(size=(hidden, 1)) * 0.1,
            "by": rng.normal(size=(V, 1)) * 0.1}


def minchar_forward(w, ids) -> np.ndarray:
    """min-char-rnn's lossFun forward pass, p[t] for every t (float64)."""
    V, h, ps = w["Why"].shape[0], np.zeros((w["Whh"].shape[0], 1)), []
    for i in ids:
        x = np.zeros((V, 1))
        x[i] = 1
        h = np.tanh(np.dot(w["Wxh"], x) + np.dot(w["Whh"], h) + w["bh"])
        y = np.dot(w["Why"], h) + w["by"]
        e = np.exp(y - y.max())  # min-char-rnn's np.exp(y) / np.sum(np.exp(y)), safe from overflow
        ps.append((e / np.sum(e))[:, 0])
    return np.array(ps)


def save_minchar(path, chars, **kw) -> dict:
    w = minchar_weights(chars, **kw)
    np.savez(path, chars=np.array(chars), **w)
    return w


def test_min_char_rnn_and_the_unknown_symbol(tmp_path):
    chars = list(dict.fromkeys(TEXT))  # list(set(data)) in min-char-rnn: an order of its own, kept by `chars`
    w = save_minchar(tmp_path / "minchar.npz", chars)
    out = import_model(tmp_path / "minchar.npz", tmp_path / "m")
    ids = [chars.index(c) for c in TEXT]
    theirs = minchar_forward(w, ids)
    ours, unk = imported_probs(out, chars, TEXT)
    assert np.abs(ours - theirs).max() < TOL
    assert (unk == 0).all()
    # log-probabilities of the next character over the model's own characters: the unknown symbol changes none
    model, config = checkpoint.load(out)
    tr = trace(model, TEXT)
    log_theirs = np.log(theirs[np.arange(len(ids) - 1), ids[1:]])
    assert np.abs(-tr.loss[:-1] - log_theirs).max() < 1e-6
    assert config["model"]["vocab"][1:] == chars and config["imported"]["source_format"] == "min-char-rnn"
    # an unknown character as the target: its loss is finite, and at least the margin below every logit
    odd = "to be \u20ac or"
    tr = trace(model, odd)
    pos = odd.index("\u20ac") - 1
    assert np.isfinite(tr.loss[:-1]).all() and tr.loss[pos] >= UNDERFLOW_MARGIN
    assert tr.probs[:, 0].max() == 0.0


def test_unknown_symbol_stays_at_zero_for_large_logits(tmp_path):
    """Head weights of 30 and every logit shifted by -1000 (softmax is unchanged by a shift): the unknown
    symbol's bias moves with the logits the model can reach, so it still gets exactly 0."""
    chars = list("abcdefgh")
    w = minchar_weights(chars, scale=30.0)
    w["by"] = w["by"] - 1000.0
    np.savez(tmp_path / "big.npz", chars=np.array(chars), **w)
    out = import_model(tmp_path / "big.npz", tmp_path / "m")
    text = "abba cafe hedge" .replace(" ", "")
    ours, unk = imported_probs(out, chars, text)
    assert (unk == 0).all()
    assert np.abs(ours - minchar_forward(w, [chars.index(c) for c in text])).max() < TOL


# ---------------------------------------------------------------- the vocabulary

def test_vocab_forms_give_the_same_checkpoint(tmp_path):
    text = "hello, world\n"
    chars = sorted(set(text))
    w = minchar_weights(chars, hidden=6)
    np.savez(tmp_path / "nochars.npz", **w)  # no `chars`: the vocabulary must come from --vocab
    forms = {"list.json": json.dumps(chars), "c2i.json": json.dumps({c: i for i, c in enumerate(chars)}),
             "i2c.json": json.dumps({str(i): c for i, c in enumerate(chars)}), "corpus.txt": text * 3}
    for name, content in forms.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        out = import_model(tmp_path / "nochars.npz", tmp_path / f"m-{name}", vocab=tmp_path / name)
        cfg = checkpoint.read_config(out)
        assert cfg["model"]["vocab"] == [UNK] + chars, name
        assert name in cfg["imported"]["vocab_source"]
    with pytest.raises(ImportRefused, match=r"holds no vocabulary \(its model predicts 10 characters\); pass --vocab"):
        import_model(tmp_path / "nochars.npz", tmp_path / "none")
    (tmp_path / "short.json").write_text(json.dumps(chars[:5]))
    with pytest.raises(ImportRefused, match="the vocabulary has 5 characters but the model's weights predict 10"):
        import_model(tmp_path / "nochars.npz", tmp_path / "short", vocab=tmp_path / "short.json")
    (tmp_path / "gap.json").write_text(json.dumps({c: 2 * i for i, c in enumerate(chars)}))
    with pytest.raises(ImportRefused, match="ids must be 0 to 9"):
        import_model(tmp_path / "nochars.npz", tmp_path / "gap", vocab=tmp_path / "gap.json")
    assert not any((tmp_path / n).exists() for n in ("none", "short", "gap"))


# ---------------------------------------------------------------- refusals that name what was found

def refusal(tmp_path, state_dict, name="m.pt") -> str:
    torch.save(state_dict, tmp_path / name)
    with pytest.raises(ImportRefused) as e:
        import_model(tmp_path / name, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    return str(e.value)


def test_ambiguous_state_dicts_are_refused_naming_what_was_found(tmp_path):
    V, H = 6, 4
    lin = lambda n_in, n_out: nn.Linear(n_in, n_out).state_dict()  # noqa: E731
    base = {f"rnn.{k}": v for k, v in nn.LSTM(V, H).state_dict().items()}
    two_heads = {**base, **{f"head_a.{k}": v for k, v in lin(H, V).items()},
                 **{f"head_b.{k}": v for k, v in lin(H, V).items()}}
    assert "expected one linear head of shape (V, 4)" in (msg := refusal(tmp_path, two_heads))
    assert "head_a.weight (6, 4)" in msg and "head_b.weight (6, 4)" in msg
    bi = {f"rnn.{k}": v for k, v in nn.LSTM(V, H, bidirectional=True).state_dict().items()}
    assert "bidirectional recurrent layer (rnn.weight_ih_l0_reverse)" in refusal(tmp_path, bi)
    proj = {f"rnn.{k}": v for k, v in nn.LSTM(V, H, proj_size=2).state_dict().items()}
    assert "proj_size (rnn.weight_hr_l0 (2, 4))" in refusal(tmp_path, proj)
    extra = {**base, **{f"mid.{k}": v for k, v in lin(H, H).items()}, **{f"out.{k}": v for k, v in lin(H, V).items()}}
    assert "mid.weight (4, 4)" in refusal(tmp_path, extra)
    two = {**base, **{f"rnn2.{k}": v for k, v in nn.GRU(H, H).state_dict().items()}}
    assert "more than one recurrent module ('rnn.', 'rnn2.')" in refusal(tmp_path, two)
    gru_scratch = {"rnn.W_xz": torch.zeros(V, H), "rnn.W_hz": torch.zeros(H, H), "rnn.b_z": torch.zeros(H),
                   "rnn.W_xr": torch.zeros(V, H), "rnn.W_hr": torch.zeros(H, H), "rnn.b_r": torch.zeros(H),
                   "rnn.W_xh": torch.zeros(V, H), "rnn.W_hh": torch.zeros(H, H), "rnn.b_h": torch.zeros(H),
                   "W_hq": torch.zeros(H, V), "b_q": torch.zeros(V)}
    assert "GRUScratch" in refusal(tmp_path, gru_scratch)


# ---------------------------------------------------------------- the CLI

def test_cli_import_records_the_source(tmp_path, capsys):
    chars = sorted(set(TEXT))
    save_minchar(tmp_path / "mc.npz", chars, hidden=8)
    assert cli_main(["import", str(tmp_path / "mc.npz"), "--out", str(tmp_path / "m"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    cfg = checkpoint.read_config(tmp_path / "m")
    assert printed["out"] == str(tmp_path / "m") and cfg["imported"]["source_format"] == "min-char-rnn"
    assert cfg["imported"]["sha256"] == hashlib.sha256((tmp_path / "mc.npz").read_bytes()).hexdigest()
    assert any("Why -> head.weight" in c for c in cfg["imported"]["conversions"])
    assert checkpoint.load(tmp_path / "m")[0].config.embed_size == len(chars)
    # a second import into the same folder, or the wrong --cell: one line, and the first checkpoint stays
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    assert cli_main(["import", str(tmp_path / "mc.npz"), "--out", str(tmp_path / "m")]) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["import", str(tmp_path / "mc.npz"), "--out", str(tmp_path / "n"), "--cell", "lstm"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --cell lstm was given, but mc.npz holds a RNN") and err.count("\n") == 1
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before and not (tmp_path / "n").exists()


# ---------------------------------------------------------------- the upload, and every page on an import

@pytest.mark.slow
def test_uploaded_imports_open_on_every_page(tmp_path, monkeypatch):
    """A PyTorch .pt with its vocabulary and a min-char-rnn .npz, uploaded in the sidebar: each converts,
    its model card says how, and the pages that study a model work on it."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from test_app import text_of

    monkeypatch.setenv("RNNVIZ_PRETRAINED", str(tmp_path / "pretrained"))
    monkeypatch.setenv("RNNVIZ_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("RNNVIZ_ATLAS_DIR", str(tmp_path / "atlas"))
    st.cache_data.clear()
    st.cache_resource.clear()
    chars = list(string.printable)
    net = randomize(TutorialRNN(len(chars), 12, len(chars), "gru", 2), seed=1)
    torch.save(net.state_dict(), tmp_path / "char-rnn.pt")
    save_minchar(tmp_path / "minchar.npz", chars[::-1], hidden=16)
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    at.file_uploader[0].set_value([("char-rnn.pt", (tmp_path / "char-rnn.pt").read_bytes(), "application/octet-stream"),
                                   ("chars.json", json.dumps(chars).encode(), "application/json")]).run()
    assert not at.exception and not at.error, text_of(at.error)
    assert at.selectbox(key="model_choice").value == "mem:1"
    card = text_of(at.markdown)
    assert "**Imported from:** pytorch\\-state\\-dict, the file char\\-rnn\\.pt" in card
    assert "The vocabulary \\(100 characters\\) comes from \\-\\-vocab chars\\.json \\(a JSON list\\)\\." in text_of(at.caption)
    at.file_uploader[0].set_value([("minchar.npz", (tmp_path / "minchar.npz").read_bytes(), "application/zip")]).run()
    assert not at.exception and not at.error, text_of(at.error)
    assert at.selectbox(key="model_choice").value == "mem:2"
    assert "its embedding is the identity over its 100 characters" in text_of(at.caption)
    folders = sorted(p.name for p in Path(at.session_state["_tmpdir"]).iterdir())
    assert folders == ["upload-1-char-rnn", "upload-2-minchar"]  # converted folders only, no leftovers
    for page in ("activations", "gates", "cell", "neurons", "atlas", "unit", "features", "feature", "gradients",
                 "sample", "circuit", "compare", "history"):
        at.switch_page(f"pages/{page}_page.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, text_of(at.error))
        if page == "atlas":  # no training corpus recorded: the atlas indexes the text under study
            assert "this model records no training corpus (an imported one, say): give a corpus" in text_of(at.info)
            at.selectbox(key="atlas_corpus").set_value("the text under study").run()
            at.button(key="atlas_build").click().run()
            deadline = time.time() + 60
            while time.time() < deadline and not at.get("plotly_chart"):
                time.sleep(0.5)
                at.run()
            assert at.get("plotly_chart") and not at.error, text_of(at.error)
        if page == "features":  # no held-out split: a dictionary would train on the text under study, and says so
            assert "over the text under study (an imported model records no corpus)" in text_of(at.info)
        if page == "unit":
            assert "outline" in "\n".join(h.proto.body for h in at.get("html"))  # a top context, its peak marked
    assert "minchar** has no training history: it was imported" in text_of(at.info)
    assert "An imported model records no training corpus: showing a built-in excerpt." in text_of(at.info)


@pytest.mark.slow
@pytest.mark.browser
def test_browser_upload_converts_a_model_and_states_the_size_limit(tmp_path_factory, tmp_path):
    """In a real browser: a PyTorch .pt and its vocabulary uploaded together convert, the model card says
    how, Neuron search runs on it; a .pt over server.maxUploadSize is refused by the uploader, never sent."""
    import tomllib

    from rnnviz.model import build
    from streamlit_server import ROOT, app_server, no_errors
    from test_browser import _model_shown, _nav, _settle, browser_page

    pre = tmp_path_factory.mktemp("pretrained-import")
    checkpoint.save(build(list("abc de"), cell="lstm", hidden_size=8, num_layers=1, seed=0), pre / "tiny-lstm")
    chars = list(string.printable)
    net = randomize(TutorialRNN(len(chars), 12, len(chars), "lstm", 2), seed=4)
    torch.save(net.state_dict(), tmp_path / "char-rnn.pt")
    (tmp_path / "chars.json").write_text(json.dumps(chars))
    limit_mb = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    with open(tmp_path / "huge.pt", "wb") as f:
        f.truncate((limit_mb + 1) * 2**20)  # sparse: nothing written
    servers = app_server(tmp_path_factory, pre)
    url, log = next(servers)
    sent = []
    try:
        with browser_page(log) as page:
            page.goto(url, wait_until="domcontentloaded")
            _settle(page, 0)
            expander = page.locator('[data-testid="stSidebar"] [data-testid="stExpander"]',
                                    has_text="Upload a checkpoint")
            expander.get_by_text("Upload a checkpoint").click()
            files = expander.locator('input[type="file"]')
            files.set_input_files([str(tmp_path / "char-rnn.pt"), str(tmp_path / "chars.json")])
            page.get_by_text(re.compile("loaded as")).first.wait_for(timeout=90_000)
            _settle(page, 0)
            assert _model_shown(page) == "char-rnn (uploaded)"
            page.locator('[data-testid="stSidebar"] [data-testid="stExpander"]',
                         has_text="Model card").get_by_text("Model card").click()
            sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
            assert "Imported from: pytorch-state-dict, the file char-rnn.pt" in sidebar
            assert "The vocabulary (100 characters) comes from --vocab chars.json (a JSON list)." in sidebar
            _nav(page, "Neuron search", 1)
            no_errors(page, "Neuron search")
            page.on("request", lambda r: sent.append(r.url) if "upload_file" in r.url else None)
            files.set_input_files(str(tmp_path / "huge.pt"))
            page.get_by_text(re.compile(rf"{limit_mb}(\.0)?\s*MB or smaller")).first.wait_for(timeout=60_000)
            assert _model_shown(page) == "char-rnn (uploaded)"
    finally:
        servers.close()
    assert not sent, f"the oversized file was sent to the server: {sent}"
