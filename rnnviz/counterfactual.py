"""Counterfactual edits: replace, insert or delete a character, run the model on both texts, compare downstream.

Rows are aligned on the characters after the edit that both texts share (the common suffix): for
each such character k of the original text, and the same character k + shift of the edited one,
  surprisal   -ln p(text[k] | everything before it), in each text, and its change;
  p           p(text[k] | everything before it), in each text, and its change;
  dh          ||h_k(edited) - h_k(original)|| per layer, the state after reading that character.
The part before the edit (the common prefix) is computed once and shared by both runs, so it
changes by exactly nothing; a no-op edit changes nothing anywhere.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from .errors import TextError
from .gradients import _frozen_head, fused_layer
from .model import CharRNN

OPS = ("replace", "insert", "delete")


class EditError(TextError):
    """An edit that cannot be made: outside the text, an unseen character, or an empty result."""


@dataclass(frozen=True)
class Edit:
    """Replace or delete the character at `position`, or insert `char` before it (position len(text): at the end)."""

    op: str
    position: int
    char: str = ""

    def apply(self, text: str) -> str:
        """The edited text, or an EditError."""
        if self.op not in OPS:
            raise EditError(f"the edit must be one of {', '.join(OPS)}, not {self.op!r}")
        n = len(text)
        hi = n if self.op == "insert" else n - 1
        if not isinstance(self.position, (int, np.integer)) or not 0 <= self.position <= hi:
            raise EditError(f"the position for {self.op} must be from 0 to {hi}, not {self.position!r}")
        if self.op != "delete" and (not isinstance(self.char, str) or len(self.char) != 1):
            raise EditError(f"{self.op} needs exactly one character, not {self.char!r}")
        p = int(self.position)
        if self.op == "replace":
            return text[:p] + self.char + text[p + 1:]
        if self.op == "insert":
            return text[:p] + self.char + text[p:]
        return text[:p] + text[p + 1:]

    def describe(self, text: str) -> str:
        from .render import char_label
        p = int(self.position)
        if self.op == "replace":
            return f"replace '{char_label(text[p])}' at #{p} by '{char_label(self.char)}'"
        if self.op == "insert":
            return f"insert '{char_label(self.char)}' before #{p}"
        return f"delete '{char_label(text[p])}' at #{p}"


@dataclass
class Counterfactual:
    """The model on a text and on its edited version, aligned on the characters after the edit."""

    text: str
    edited: str
    prefix: int  # characters shared at the start
    suffix: int  # characters shared at the end (not overlapping the prefix)
    positions: np.ndarray  # (n,) original positions of the aligned characters (the common suffix)
    surprisal: np.ndarray  # (n,) in the original; NaN at position 0
    surprisal_edited: np.ndarray  # (n,)
    p: np.ndarray  # (n,) probability of the character in the original
    p_edited: np.ndarray  # (n,)
    dh: np.ndarray  # (L, n) ||Δh|| per layer

    @property
    def shift(self) -> int:
        return len(self.edited) - len(self.text)

    @property
    def d_surprisal(self) -> np.ndarray:
        return self.surprisal_edited - self.surprisal

    @property
    def d_p(self) -> np.ndarray:
        return self.p_edited - self.p

    def select(self, keep: np.ndarray) -> "Counterfactual":
        """The same comparison on a subset of the aligned rows (a boolean mask or indices), for a chart."""
        return replace(self, positions=self.positions[keep], surprisal=self.surprisal[keep],
                       surprisal_edited=self.surprisal_edited[keep], p=self.p[keep], p_edited=self.p_edited[keep],
                       dh=self.dh[:, keep])

    @property
    def distance(self) -> np.ndarray:
        """How many characters after the edit each aligned character comes (1 = the first one after it)."""
        return self.positions - (len(self.text) - self.suffix) + 1


def _check_new_chars(model: CharRNN, text: str, edited: str) -> None:
    """An edit may not bring in a character the model never saw (the text's own ones are read, as in a trace,
    as the unknown symbol)."""
    unseen = sorted(set(edited) - set(text) - set(model.vocab.chars))
    if unseen:
        raise EditError(f"the edit brings in characters the model never saw: {''.join(unseen)!r}; use characters "
                        "of its vocabulary")


@torch.no_grad()
def _run(model: CharRNN, ids: torch.Tensor, states):
    """ids (T,) from `states` (per layer, or None for zero) -> (log-probs (T, V), h per layer (L, T, H), final states)."""
    cell, H = model.cell, model.config.hidden_size
    x = model.embed.weight.detach()[ids][None]  # (1, T, E)
    hs, finals = [], []
    for l in range(model.config.num_layers):
        if len(ids) == 0:  # nothing to read: the state stays as it was (zeros where none was given)
            zero = torch.zeros(1, 1, H, dtype=x.dtype, device=x.device)
            finals.append(states[l] if states[l] is not None else (zero, zero) if cell == "lstm" else zero)
            hs.append(x.new_zeros(0, H))
            x = x.new_zeros(1, 0, H)
            continue
        x, final = fused_layer(model, l, x, states[l])
        finals.append(final)
        hs.append(x[0])
    logp = torch.log_softmax(_frozen_head(model, x[0]), -1) if len(ids) else None  # (T, V)
    return logp, hs, finals


def counterfactual(model: CharRNN, text: str, edit: Edit | str) -> Counterfactual:
    """Run the model on `text` and on its edit (an Edit, or the whole edited text) and align them downstream."""
    if not isinstance(text, str) or not text:
        raise EditError("the text is empty: give at least one character")
    edited = edit.apply(text) if isinstance(edit, Edit) else edit
    if not isinstance(edited, str) or not edited:
        raise EditError("the edit leaves the text empty: keep at least one character")
    _check_new_chars(model, text, edited)
    n, m = len(text), len(edited)
    pre = 0
    while pre < min(n, m) and text[pre] == edited[pre]:
        pre += 1
    suf = 0
    while suf < min(n, m) - pre and text[n - 1 - suf] == edited[m - 1 - suf]:
        suf += 1
    if text == edited:  # no change at all: every character is aligned (and computed once)
        suf = n
    vocab = model.vocab
    a, b = torch.from_numpy(vocab.encode(text)), torch.from_numpy(vocab.encode(edited))
    a, b = a.to(model.device), b.to(model.device)
    # the shared prefix once; both texts go on from its final state, so it cannot differ between them
    lp0, h0, st = _run(model, a[:pre], [None] * model.config.num_layers)
    lp1, h1, _ = _run(model, a[pre:], st)
    lp2, h2, _ = _run(model, b[pre:], st)
    L = model.config.num_layers
    cat = [x for x in (lp0, lp1) if x is not None]
    logp_a = torch.cat(cat) if cat else None  # (n, V)
    logp_b = torch.cat([x for x in (lp0, lp2) if x is not None])  # (m, V)
    ha = [torch.cat([h0[l], h1[l]]) for l in range(L)]
    hb = [torch.cat([h0[l], h2[l]]) for l in range(L)]
    pos = np.arange(n - suf, n)  # (k,) original positions of the common suffix
    pos_b = pos + (m - n)

    def char_logp(logp, ids, where):
        out = np.full(len(where), np.nan)
        ok = where >= 1
        w = torch.from_numpy(where[ok]).to(ids.device)
        out[ok] = logp[w - 1].gather(1, ids[w][:, None])[:, 0].double().cpu().numpy()
        return out

    la, lb = char_logp(logp_a, a, pos), char_logp(logp_b, b, pos_b)
    ia, ib = torch.from_numpy(pos).to(a.device), torch.from_numpy(pos_b).to(a.device)
    dh = np.stack([(hb[l][ib] - ha[l][ia]).double().norm(dim=-1).cpu().numpy() for l in range(L)]) if suf \
        else np.zeros((L, 0))
    return Counterfactual(text=text, edited=edited, prefix=pre, suffix=suf, positions=pos, surprisal=-la,
                          surprisal_edited=-lb, p=np.exp(la), p_edited=np.exp(lb), dh=dh)


def open_at(text: str, t: int, min_gap: int = 10) -> int | None:
    """The innermost opening quote or bracket still open after reading text[t], opened at least `min_gap`
    characters before t, or None: deleting it is an edit that tells the story of a long-range dependency.
    Double quotes pair up in turn; a single quote after a letter is an apostrophe (it's), not a quote."""
    stack: list[tuple[str, int]] = []
    closers = {")": "(", "]": "[", "}": "{"}
    for i, ch in enumerate(text[: t + 1]):
        if ch in "([{":
            stack.append((ch, i))
        elif ch in closers:
            if stack and stack[-1][0] == closers[ch]:
                stack.pop()
        elif ch == '"' or (ch == "'" and not (i > 0 and text[i - 1].isalpha())):
            if stack and stack[-1][0] == ch:
                stack.pop()
            else:
                stack.append((ch, i))
        elif ch == "'" and stack and stack[-1][0] == "'":  # a closing single quote after a word
            stack.pop()
    for _, i in reversed(stack):
        if t - i >= min_gap:
            return i
    return None


def candidate_edits(text: str, t: int, min_gap: int = 20, influence: np.ndarray | None = None) -> list[Edit]:
    """Edits `min_gap` or more characters before target t that could tell a long-range story: delete the quote
    or bracket still open at t, delete the most influential character (influence: (t+1,) by position, e.g.
    a saliency's gradient norm), replace the last line break by a space (joining two lines), delete the
    character min_gap back. Duplicates left out."""
    out: list[Edit] = []
    opener = open_at(text, t, min_gap=min_gap)
    if opener is not None:
        out.append(Edit("delete", opener))
    far = t - min_gap + 1  # positions before this one lie min_gap or more back
    if influence is not None and far > 0:
        out.append(Edit("delete", int(np.argmax(np.abs(np.asarray(influence)[:far])))))
    nl = text.rfind("\n", max(0, t - 200), max(0, far))
    if nl >= 0:
        out.append(Edit("replace", nl, " "))
    out.append(Edit("delete", max(0, t - min_gap)))
    seen, unique = set(), []
    for e in out:
        if (e.op, e.position) not in seen:
            seen.add((e.op, e.position))
            unique.append(e)
    return unique


def default_edit(model: CharRNN, text: str, t: int, min_gap: int = 20,
                 influence: np.ndarray | None = None) -> tuple[Edit, float]:
    """(edit, change): of the candidate_edits, the one that changes log p(text[t+1] | everything before it)
    the most, measured exactly (both texts rerun up to t+1); change is that change in log p (NaN when t is
    the text's last position: nothing to predict, so the first candidate is kept)."""
    best, best_change = None, float("nan")
    for edit in candidate_edits(text, t, min_gap, influence):
        if t + 1 >= len(text):
            return edit, float("nan")
        try:
            cf = counterfactual(model, text[: t + 2], edit)
        except EditError:  # e.g. a replacement the model's vocabulary lacks
            continue
        k = np.flatnonzero(cf.positions == t + 1)
        change = float(-cf.d_surprisal[k[0]]) if k.size else float("nan")
        if best is None or (np.isfinite(change) and not abs(change) <= abs(best_change)):
            best, best_change = edit, change
    if best is None:
        return Edit("delete", max(0, t - min_gap)), float("nan")
    return best, best_change


def p_pair(a: float, b: float) -> tuple[str, str]:
    """Two probabilities with enough decimals (3 to 6) to tell them apart when they differ."""
    for d in range(3, 7):
        x, y = f"{a:.{d}f}", f"{b:.{d}f}"
        if x != y:
            break
    return x, y


def prediction_length(t: int, position: int, show_after: int = 150, reach: int = 1_000) -> int:
    """How many characters after an edit at `position` the gradient's prediction covers: `show_after`, stretched
    to reach the prediction at target t when t + 1 lies at most `reach` characters after the edit."""
    return max(show_after, t + 1 - position) if t + 1 - position <= reach else show_after


def summary(what: str, cf: Counterfactual, predicted: np.ndarray | None, t: int | None, position: int,
            reach: int = 1_000) -> str:
    """Markdown over the edit chart: p at target t (None: no target) before and after the edit, the gradient's
    predicted change there (predicted: (len(text),) or None, as saliency.predicted_change gives it), and the
    largest change."""
    from .render import char_label
    text = cf.text
    line = f"**{what}.** "
    # the character t predicts, if it is downstream
    k_t = np.flatnonzero(cf.positions == t + 1) if t is not None else np.array([], dtype=int)
    if k_t.size:
        j = int(k_t[0])
        before, after = p_pair(cf.p[j], cf.p_edited[j])
        line += (f"At t = {t}, p('{char_label(text[t + 1])}') goes from {before} to {after} "
                 f"(surprisal {cf.surprisal[j]:.2f} → {cf.surprisal_edited[j]:.2f} nats)")
        if predicted is not None and np.isfinite(predicted[t + 1]):
            line += (f"; the gradient predicted a change in log p of {predicted[t + 1]:+.3f}, the actual is "
                     f"{-cf.d_surprisal[j]:+.3f}")
        elif predicted is not None:
            line += (f"; t lies {t + 1 - position} characters after the edit, beyond the {reach:,} the gradient's "
                     "prediction is taken over")
        line += ". "
    big = np.nanargmax(np.abs(cf.d_surprisal)) if np.isfinite(cf.d_surprisal).any() else None
    if big is not None:
        k = int(cf.positions[big])
        line += (f"The largest change is at #{k} ('{char_label(text[k])}', {k - position} after the edit): "
                 f"surprisal {cf.d_surprisal[big]:+.2f} nats.")
    return line
