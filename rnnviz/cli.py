"""Command line: python -m rnnviz train | sample | trace | probe | grads | memory | atlas | saliency | edit | ngram |
compare | cell."""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import checkpoint, experiments, history
from .corpora import corpus_meta, excerpt, split
from .errors import ConfigError, RnnvizError
from .gradients import fresh_model, gradient_norms
from .heldout import held_out
from .model import CELLS, build, describe_device
from .hypotheses import HYPOTHESES, hypothesis_mask, is_binary, regex_hypothesis
from .probes import CHANCE_SHIFTS, direction_words, rank_units, search_summary
from .recipes import RECIPES, SHAKESPEARE_ENV, corpus_from_spec, recipe_corpus
from .sampling import Clamp, sample
from .trace import ARRAY_DOC, trace
from .training import TrainConfig, Trainer, evaluate
from .vocab import Vocab, decode_utf8


def _read_text(args, config: dict | None = None) -> str:
    if args.file:
        return decode_utf8(Path(args.file).read_bytes(), args.file)
    if getattr(args, "held_out", False) or args.text is None:
        return _held_out_excerpt(config or {}, args.length)
    return args.text


def _held_out_excerpt(config: dict, length: int) -> str:
    """The excerpt of the checkpoint's held-out text the app shows, saying on stderr when the local
    corpus differs from the one the model trained on (see heldout.held_out)."""
    if length < 1:
        raise ConfigError(f"--length must be at least 1, not {length}")
    held = held_out(config)
    if held is None:
        raise ConfigError("the corpus this checkpoint trained on is not on this machine: give --text or --file")
    if held.notice:
        print(f"note: {held.notice}", file=sys.stderr)
    text = excerpt(held, length)
    if not text:
        raise ConfigError("none of this checkpoint's held-out text is on this machine: give --text or --file")
    return text


def cmd_train(args) -> int:
    recipe = RECIPES[args.recipe] if args.recipe else None
    if recipe:
        corpus = recipe_corpus(recipe, args.recipe, args.corpus, allow_other=args.allow_other_corpus)
    else:
        corpus = corpus_from_spec(args.corpus or "shakespeare")
    train_text, val_text = split(corpus, recipe.val_fraction if recipe else 0.1)
    if args.resume:
        model, before = checkpoint.load(args.resume)
        was = before.get("corpus") if isinstance(before.get("corpus"), dict) else {}
        if was.get("sha256") != corpus.sha256:
            print(f"note: {corpus.name} here is not the corpus {args.resume} trained on so far (its sha256 "
                  f"differs): the split recorded from now on is this corpus's, and its held-out part may "
                  f"hold text the model has trained on", file=sys.stderr)
    else:
        shape = dict(recipe.model) if recipe else {}
        for key, arg in (("cell", "cell"), ("num_layers", "layers"), ("hidden_size", "hidden"),
                         ("embed_size", "embed"), ("dropout", "dropout")):
            if getattr(args, arg) is not None:
                shape[key] = getattr(args, arg)
        model = build(Vocab.from_text(corpus.text), seed=args.seed if args.seed is not None else 0, **shape)
    cfg = recipe.train if recipe else TrainConfig()
    if args.resume and not recipe:  # the saved run's settings, not TrainConfig's defaults
        saved = (before.get("training") or {}).get("config") or {}
        cfg = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
    overrides = dict(seq_len=args.seq_len, batch_size=args.batch, lr=args.lr, eval_every=args.eval_every,
                     sample_every=args.sample_every, seed=args.seed, device=args.device, bptt=args.bptt,
                     threads=args.threads, history=args.history)
    cfg = TrainConfig(**{**cfg.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    if args.steps is not None or args.seconds is not None:
        cfg.max_steps, cfg.max_seconds = args.steps, args.seconds
    out = Path(args.out or f"models/{args.recipe or model.cell}")
    meta = {"name": out.name, "recipe": args.recipe}
    trainer = Trainer(model, train_text, val_text, cfg,
                      corpus=corpus_meta(corpus, recipe.val_fraction if recipe else 0.1))
    if args.resume:
        trainer.resume(args.resume)
    print(f"training a {model.cell.upper()} {model.config.num_layers}x{model.config.hidden_size} "
          f"({model.num_params():,} parameters) on {corpus.name} ({len(train_text):,} train / "
          f"{len(val_text):,} val chars) on {describe_device(trainer.device)}", flush=True)
    trainer.add_callback("on_eval", lambda t, val_loss: print(
        f"step {t.step:6d}  train {t.curve[-1]['train_loss']:.4f}  val {val_loss:.4f} nats/char "
        f"({val_loss / math.log(2):.3f} bits)  {t.snapshot().get('chars_per_sec', 0):,.0f} chars/s", flush=True))
    trainer.add_callback("on_sample", lambda t, text: print(f"--- sample at step {t.step} ---\n{text}\n---"))
    try:
        result = trainer.run()
    except KeyboardInterrupt:
        trainer.stop_event.set()
        print("interrupted: saving what was trained so far")
        result = None
    dtype = args.dtype or (recipe.dtype if recipe else "float32")
    meta.update(trainer.training_meta(result))
    meta["val_split"] = f"first {min(cfg.eval_chars, len(val_text)):,} chars"
    optimizer = trainer.optimizer_state() if args.keep_optimizer else None
    checkpoint.save(trainer.model, out, meta=meta, dtype=dtype, optimizer_state=optimizer,
                    history=trainer.history)
    if args.full_val and len(val_text) >= 2:
        # the reported number is measured on the weights as stored, over the whole val split as one stream
        stored, _ = checkpoint.load(out)
        val = evaluate(stored, val_text)
        meta.update(val_loss=val, val_bpc=val / math.log(2), val_split=f"full ({len(val_text):,} chars, {dtype})")
        checkpoint.save(stored, out, meta=meta, dtype=dtype, optimizer_state=optimizer,
                        history=trainer.history)
        print(f"validation loss on the whole split ({len(val_text):,} chars, {dtype} weights): "
              f"{val:.4f} nats/char ({val / math.log(2):.4f} bits/char)")
    status = result.status if result else "stopped"
    print(f"{status}: {result.reason if result else 'interrupted'}; saved to {out}")
    return 1 if status == "failed" else 0


def _parse_clamp(spec: str | None) -> Clamp | None:
    if not spec:
        return None
    parts = spec.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError("--clamp takes LAYER:UNIT[,UNIT...]:VALUE[:h|c], e.g. 1:42:0")
    return Clamp(layer=int(parts[0]), units=[int(u) for u in parts[1].split(",")], value=float(parts[2]),
                 kind=parts[3] if len(parts) == 4 else "h")


def cmd_sample(args) -> int:
    model, _ = checkpoint.load(args.checkpoint)
    s = sample(model, args.prime, args.length, args.temperature, args.top_k, args.seed, _parse_clamp(args.clamp))
    if s.unknown:
        print(f"note: the prime holds characters the model never saw: {''.join(s.unknown)!r}", file=sys.stderr)
    print(s.prime + s.text)
    if args.probs:
        print(f"mean probability of the chosen characters: {float(np.mean(s.probs)):.3f}", file=sys.stderr)
    return 0


def cmd_history(args) -> int:
    h = history.read(args.checkpoint)
    for line in h.problems():
        print(f"note: a snapshot could not be loaded and is left out: {line}", file=sys.stderr)
    if not h.steps:
        raise ConfigError(f"{args.checkpoint} holds no loadable snapshot (train with --history N to record some)")
    table = history.evolution(h, prime=args.prime, length=args.length, temperature=args.temperature, seed=args.seed)
    print(f"{len(h.steps)} snapshots of {args.checkpoint}: the same prime {args.prime!r}, temperature "
          f"{args.temperature:g} and seed {args.seed} at every one, so what changes is the network. Losses in nats/char.")
    for row in table.itertuples():
        losses = [f"{name} {v:.3f}" for name, v in (("train loss", row.train_loss), ("val loss", row.val_loss))
                  if not math.isnan(v)]
        print(f"\nstep {row.step:,}" + "".join(f" · {x}" for x in losses))
        print("  " + row.sample.replace("\n", "\n  "))
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_trace(args) -> int:
    if args.describe:
        print(ARRAY_DOC)
        return 0
    model, config = checkpoint.load(args.checkpoint)
    tr = trace(model, _read_text(args, config), top_k=args.top_k)
    if tr.unknown:
        print(f"note: characters the model never saw (traced as the unknown symbol): "
              f"{''.join(sorted(tr.unknown))!r}", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tr.to_npz(out)
    print(f"wrote {out}: {len(tr):,} characters, {len(tr.layers)} layers, kinds {', '.join(tr.kinds)}; "
          f"mean surprisal {tr.mean_loss():.4f} nats/char")
    for path, writer in ((args.csv, "to_csv"), (args.parquet, "to_parquet")):
        if path:
            frame = tr.to_frame(args.layer, args.kind)
            getattr(frame, writer)(path, index=False)
            print(f"wrote {path}: layer {args.layer} {args.kind}, {frame.shape[0]:,} rows x {frame.shape[1]} columns")
    return 0


def cmd_probe(args) -> int:
    model, config = checkpoint.load(args.checkpoint)
    text = _read_text(args, config)
    if not text:
        raise ConfigError("the text is empty: give at least one character")
    mask = None
    if args.regex is not None:
        labels, name = regex_hypothesis(args.regex)(text), f"regex {args.regex!r}"
    else:
        labels, name = HYPOTHESES[args.hypothesis](text), args.hypothesis
        mask = hypothesis_mask(name, text)  # the characters it counts, as Neuron search and Activations do
    counted = labels if mask is None else labels[mask]
    if not counted.size or counted.min() == counted.max():
        raise ConfigError(f"{name} has the same value on every character of this text: nothing can track it")
    df = rank_units(trace(model, text, gates=False), labels, mask, shifts=CHANCE_SHIFTS if args.chance else 0)
    binary = is_binary(labels)
    over = f"{len(text):,} characters" if mask is None else f"the {int(mask.sum()):,} of {len(text):,} characters it counts"
    print(f"{len(df):,} units ranked against {name} over {over}, best first. auroc: P(the unit "
          f"is higher where it holds than where not); score: {'max(auroc, 1 - auroc)' if binary else '|r|'}")
    print(f"{'rank':>4}  {'unit':<10} {'direction':<36} {'auroc':>6} {'score':>6} {'r':>7}")
    for i, row in enumerate(df.head(args.top).itertuples()):
        print(f"{i + 1:4d}  {f'L{row.layer} {row.kind}{row.unit}':<10} "
              f"{direction_words(row.direction, name, binary):<36} {row.auroc:6.3f} {row.score:6.3f} {row.corr:+7.3f}")
    if args.chance:  # Neuron search's words: what the scores rest on, the chance level, the verdict
        summary = search_summary(df, labels, mask, name)
        for words in (summary["evidence_text"], summary["verdict"][1]):
            print(words.replace("**", "").replace("*", ""))
    if args.out:
        df.to_csv(args.out, index=False)
        print(f"wrote {args.out}: all {len(df):,} units")
    return 0


def cmd_grads(args) -> int:
    text = _read_text(args)
    if args.checkpoint:
        model, _ = checkpoint.load(args.checkpoint)
    else:
        model = fresh_model(Vocab.from_text(text), args.fresh, hidden_size=args.hidden, num_layers=args.layers,
                            seed=args.seed, spectral_radius=args.spectral_radius, forget_bias=args.forget_bias,
                            update_bias=args.update_bias)
    flow = gradient_norms(model, text, loss_at=args.loss)
    L, T = flow.dh.shape
    print(f"{flow.cell.upper()} {L} layer(s), T = {T}, loss at {flow.loss_at} position(s) = {flow.loss:.4f}; "
          f"largest singular value of W_hh per layer: {', '.join(f'{s:.3f}' for s in flow.sigma_max)}")
    header = "distance T-1-t " + " ".join(f"  |dL/dh| L{l}" for l in range(L))
    if flow.dc is not None:
        header += " ".join(f"  |dL/dc| L{l}" for l in range(L))
    print(header)
    for d in sorted({0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, T - 1}):
        if d < T:
            t = T - 1 - d
            row = f"{d:14d} " + " ".join(f"{flow.dh[l, t]:12.3e}" for l in range(L))
            if flow.dc is not None:
                row += " ".join(f"{flow.dc[l, t]:12.3e}" for l in range(L))
            print(row)
    if args.out:
        import pandas as pd
        cols = {"t": np.arange(T), "distance": flow.distance, "char": list(flow.text)}
        for l in range(L):
            cols[f"dh_L{l}"] = flow.dh[l]
            if flow.dc is not None:
                cols[f"dc_L{l}"] = flow.dc[l]
        pd.DataFrame(cols).to_csv(args.out, index=False)
        print(f"wrote {args.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    prog = "rnnviz" if Path(sys.argv[0]).name == "rnnviz" else "python -m rnnviz"  # the console script or -m
    p = argparse.ArgumentParser(prog=prog, description="See inside character-level RNNs.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (from a recipe or options) and save a checkpoint")
    t.add_argument("--recipe", choices=sorted(RECIPES), help="a named, seeded recipe (see docs/models.md)")
    t.add_argument("--corpus", help="built-in corpus name (shakespeare, python, quotes, memory) or a text file; "
                                    f"a Shakespeare recipe's tinyshakespeare file (default: ${SHAKESPEARE_ENV}, "
                                    "else ../shared/data/tinyshakespeare.txt beside the checkout)")
    t.add_argument("--allow-other-corpus", action="store_true",
                   help="train a recipe on a corpus file whose sha256 is not the shipped model's")
    t.add_argument("--cell", choices=CELLS)
    t.add_argument("--layers", type=int)
    t.add_argument("--hidden", type=int)
    t.add_argument("--embed", type=int)
    t.add_argument("--dropout", type=float)
    t.add_argument("--seq-len", type=int)
    t.add_argument("--batch", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--steps", type=int, help="step budget (with --resume: the total, counted from the first step)")
    t.add_argument("--seconds", type=float, help="time budget in seconds (with --resume: the total, likewise)")
    t.add_argument("--bptt", choices=["stateful", "random"])
    t.add_argument("--eval-every", type=int)
    t.add_argument("--sample-every", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="auto (default), cpu, cuda, mps")
    t.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    t.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="storage of the saved weights")
    t.add_argument("--full-val", action="store_true", help="report the loss on the whole validation split")
    t.add_argument("--keep-optimizer", action="store_true", help="also save the optimizer moments (to resume)")
    t.add_argument("--history", type=int, metavar="N",
                   help="keep N snapshots of the weights (log-spaced steps, the last among them) in <out>/history/ "
                        "(0: none; default: the recipe's, else none)")
    t.add_argument("--resume", help="a checkpoint folder to continue training: its settings and learning-rate "
                                    "schedule go on where it stopped")
    t.add_argument("--out", help="checkpoint folder to write (default models/<recipe or cell>)")
    t.set_defaults(fn=cmd_train)

    s = sub.add_parser("sample", help="generate text from a checkpoint")
    s.add_argument("checkpoint")
    s.add_argument("--prime", default="\n")
    s.add_argument("--length", type=int, default=300)
    s.add_argument("--temperature", type=float, default=0.8,
                   help="0 = always the likeliest; any tiny positive value tends to that (default 0.8)")
    s.add_argument("--top-k", type=int, help="keep exactly the k likeliest characters (ties: the lowest id)")
    s.add_argument("--seed", type=int)
    s.add_argument("--clamp", help="LAYER:UNIT[,UNIT...]:VALUE[:h|c], held at every step, the prime's included")
    s.add_argument("--probs", action="store_true", help="also report the mean probability of the chosen characters")
    s.set_defaults(fn=cmd_sample)

    hi = sub.add_parser("history", help="the evolution of samples: each snapshot of a run's history, its losses and "
                                        "its sample at the same prime, temperature and seed (the Training history page)")
    hi.add_argument("checkpoint")
    hi.add_argument("--prime", default="\n")
    hi.add_argument("--length", type=int, default=200)
    hi.add_argument("--temperature", type=float, default=0.8)
    hi.add_argument("--seed", type=int, default=1)
    hi.add_argument("--out", help="also write the table (step, train_loss, val_loss, sample) as CSV")
    hi.set_defaults(fn=cmd_history)

    for name, fn, hlp in (("trace", cmd_trace, "export h, c and every gate per character (NPZ, CSV, Parquet)"),
                          ("probe", cmd_probe, "rank every unit against a hypothesis about the characters"),
                          ("grads", cmd_grads, "print and export ||dL/dh_t|| per timestep and layer")):
        c = sub.add_parser(name, help=hlp, epilog=ARRAY_DOC if name == "trace" else None,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        src = c.add_mutually_exclusive_group()
        example = "The quick brown fox jumps over the lazy dog.\n" * 4
        src.add_argument("--text", default=None if name == "probe" else example)
        src.add_argument("--file", help="a UTF-8 text file to read")
        if name in ("trace", "probe"):
            src.add_argument("--held-out", action="store_true",
                             help="the app's excerpt of the checkpoint's held-out text (probe's default); a note "
                                  "says when this machine's corpus differs from the one it trained on")
            c.add_argument("--length", type=int, default=20_000, help="characters of held-out text (default 20,000)")
        if name == "probe":
            c.add_argument("checkpoint")
            hyp = c.add_mutually_exclusive_group()
            hyp.add_argument("--hypothesis", choices=sorted(HYPOTHESES), default="inside quotes")
            hyp.add_argument("--regex", help="1 inside each match of this regular expression")
            c.add_argument("--top", type=int, default=10, help="units to print (default 10)")
            c.add_argument("--out", help="CSV file for every unit's row")
            c.add_argument("--chance", action="store_true",
                           help=f"also each unit's chance level ({CHANCE_SHIFTS} circular shifts of the labels), "
                                "the evidence the scores rest on and whether the best unit beats chance, as "
                                "Neuron search says it")
        elif name == "trace":
            c.add_argument("checkpoint", nargs="?")
            c.add_argument("--out", default="trace.npz")
            c.add_argument("--csv", help="also write one layer/kind as CSV")
            c.add_argument("--parquet", help="also write one layer/kind as Parquet")
            c.add_argument("--layer", type=int, default=0)
            c.add_argument("--kind", default="h", help="h, c, or a gate name")
            c.add_argument("--top-k", type=int, default=5)
            c.add_argument("--describe", action="store_true", help="print the array names and exit")
        else:
            who = c.add_mutually_exclusive_group(required=True)
            who.add_argument("checkpoint", nargs="?")
            who.add_argument("--fresh", choices=CELLS, help="a freshly initialised model of this cell instead")
            c.add_argument("--hidden", type=int, default=128)
            c.add_argument("--layers", type=int, default=1)
            c.add_argument("--seed", type=int, default=0)
            c.add_argument("--spectral-radius", type=float, help="RNN init: scale W_hh to this spectral radius")
            c.add_argument("--forget-bias", type=float, help="LSTM init: forget-gate bias")
            c.add_argument("--update-bias", type=float, help="GRU init: update-gate bias (positive keeps the state)")
            c.add_argument("--loss", choices=["last", "mean"], default="last")
            c.add_argument("--out", help="CSV file for the norms")
        c.set_defaults(fn=fn)

    m = sub.add_parser("memory", help="the memory experiment: recall accuracy against the gap, per cell")
    m.add_argument("--cells", nargs="+", choices=CELLS, default=list(CELLS))
    m.add_argument("--gaps", nargs="+", type=int, default=list(experiments.GAPS))
    m.add_argument("--steps", type=int, default=experiments.STEPS, help="training steps, the same for every cell")
    m.add_argument("--hidden", type=int, default=experiments.HIDDEN)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    m.add_argument("--save", help="a folder to write each model to, as memory-<cell> (the shipped ones: pretrained)")
    m.add_argument("--history", type=int, default=0, metavar="N",
                   help="keep N snapshots per cell, print recall at each, and save them in history/ with --save")
    m.add_argument("--measure", metavar="FOLDER",
                   help="train nothing: measure the memory-<cell> models saved in FOLDER (the shipped ones: "
                        "pretrained): recall per gap, the gradient of a recall back to its key, the long-memory units")
    m.set_defaults(fn=cmd_memory)

    a = sub.add_parser("atlas", help="index a model over a corpus: every unit's top characters, statistics and "
                                     "best hypothesis (cached)")
    a.add_argument("checkpoint")
    a.add_argument("--corpus", help="a built-in corpus name or a UTF-8 file (default: the model's held-out text)")
    a.add_argument("--chars", type=int, default=200_000, help="cut the corpus at this many characters (200,000)")
    a.add_argument("--out", help="the cache folder (default: $RNNVIZ_ATLAS_DIR or atlas_cache/)")
    a.add_argument("--unit", help="LAYER:KIND:UNIT, e.g. 1:c:28: that unit's top and bottom characters and labels")
    a.add_argument("--top", type=int, default=10, help="separated peaks to list with --unit, highest and lowest: "
                   "no two within 20 characters (default 10, at most 16)")
    a.add_argument("--width", type=int, default=40, help="characters of context on each side (default 40)")
    a.add_argument("--json", action="store_true", help="with --unit: print one JSON object")
    a.add_argument("--export-lstmvis", metavar="DIR", help="also write states.h5, train.h5, words.dict and "
                                                           "lstm.yml for LSTMVis")
    a.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    a.set_defaults(fn=cmd_atlas)

    sal = sub.add_parser("saliency", help="how much each earlier character moves one prediction: gradient norm "
                                          "and gradient x input per position")
    sal.add_argument("checkpoint")
    sal_src = sal.add_mutually_exclusive_group(required=True)
    sal_src.add_argument("--file", help="a UTF-8 text file to read")
    sal_src.add_argument("--text")
    sal.add_argument("--target", type=int,
                     help="position T, 1 to len-1: the prediction after reading character T (default: the "
                          "Why page's rule, an unsure prediction that looks far back)")
    sal.add_argument("--json", action="store_true", help='print {"target", "grad_norm", "grad_x_input"}')
    sal.add_argument("--top", type=int, default=15, help="positions to list without --json (default 15)")
    sal.set_defaults(fn=cmd_saliency)

    ed = sub.add_parser("edit", help="change one character and rerun: the exact change in surprisal of every "
                                     "character after it, and the gradient's first-order prediction of it")
    ed.add_argument("checkpoint")
    ed_src = ed.add_mutually_exclusive_group(required=True)
    ed_src.add_argument("--file", help="a UTF-8 text file to read")
    ed_src.add_argument("--text")
    ed.add_argument("--op", choices=["replace", "insert", "delete"], required=True)
    ed.add_argument("--pos", type=int, required=True, help="the character replaced or deleted, or inserted before")
    ed.add_argument("--char", default="", help="the new character (replace, insert)")
    ed.add_argument("--target", type=int, help="also say how p at this target (the prediction after reading "
                                               "character T) moves")
    ed.add_argument("--top", type=int, default=10, help="largest changes to list without --json (default 10)")
    ed.add_argument("--json", action="store_true", help='print {"edit", "positions", "surprisal", '
                                                        '"surprisal_edited", "predicted"}')
    ed.set_defaults(fn=cmd_edit)

    # issue 11: the n-gram baseline and two-model comparison (rnnviz.ngram, rnnviz.compare)
    ng = sub.add_parser("ngram", help="fit an interpolated Kneser-Ney character n-gram on a corpus's training split "
                                      "and print its loss (nats/char)")
    ng.add_argument("--corpus", required=True, help="a built-in corpus name or a UTF-8 file (split 90/10 as the "
                                                    "recipes do; the n-gram fits the first part)")
    ng.add_argument("--order", type=int, default=8)
    ng.add_argument("--eval", help="a UTF-8 file to score (default: the corpus's held-out split)")
    ng.add_argument("--json", action="store_true", help='print {"order": N, "loss": L}')
    ng.set_defaults(fn=cmd_ngram)
    cm = sub.add_parser("compare", help="two models on the same text: mean surprisal per character class and "
                                        "closing-delimiter accuracy against distance")
    cm.add_argument("a", help="a checkpoint folder")
    cm.add_argument("b", help="a second checkpoint folder, or ngram:N for an order-N n-gram fitted on A's "
                              "training split")
    src = cm.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="the UTF-8 text to compare on")
    src.add_argument("--held-out", action="store_true", help="A's whole held-out split instead")
    cm.add_argument("--json", action="store_true", help="print one JSON object")
    cm.set_defaults(fn=cmd_compare)
    # issue 26: one exact step of one unit, every quantity of the cell's arithmetic (rnnviz.anatomy)
    ce = sub.add_parser("cell", help="one unit's step at one character: every value of the cell's arithmetic, each "
                                     "gate's pre-activation in its input, recurrent and bias parts, the top "
                                     "contributors from h_(t-1)")
    ce.add_argument("checkpoint")
    ce.add_argument("--text", "--file", dest="file", required=True, metavar="FILE",
                    help="a UTF-8 text file, read from its first character")
    ce.add_argument("--pos", type=int, required=True, help="the character T (from 0) whose step is shown")
    ce.add_argument("--layer", type=int, default=0)
    ce.add_argument("--unit", type=int, required=True)
    ce.add_argument("--top", type=int, default=5, help="recurrent contributors per gate (default 5)")
    ce.add_argument("--json", action="store_true", help="print one JSON object (docs/format.md names its fields)")
    ce.set_defaults(fn=cmd_cell)
    # issue 27: one prediction's circuit through units and time (rnnviz.circuits)
    ci = sub.add_parser("circuit", help="the nodes (layer, h or c, unit, position) that carry one prediction, each "
                                        "checked by an exact zero ablation; edges, coverage and r²")
    ci.add_argument("checkpoint")
    ci.add_argument("--text", "--file", dest="file", required=True, metavar="FILE",
                    help="a UTF-8 text file, read from its first character with a zero initial state")
    ci.add_argument("--pos", type=int, required=True, help="T: the prediction after reading character T (from 0)")
    ci.add_argument("--char", help="the character whose log-probability is explained (default: the true next one)")
    ci.add_argument("--back", type=int, default=100, help="positions scored, T-D+1 to T (default 100)")
    ci.add_argument("--nodes", type=int, default=50, help="nodes kept (default 50)")
    ci.add_argument("--method", default=None, help="attribution method (default: rnnviz.circuits.DEFAULT_METHOD)")
    ci.add_argument("--json", action="store_true", help="print one JSON object (docs/format.md names its fields)")
    ci.set_defaults(fn=cmd_circuit)
    # issue 28: a sparse dictionary over one layer's h or c (rnnviz.features)
    fe = sub.add_parser("features", help="train a TopK sparse dictionary over one layer's h or c (or load it from the "
                                         "cache) and measure it: reconstruction, splice losses, units against features")
    fe.add_argument("checkpoint")
    fe.add_argument("--layer", type=int, default=-1, help="the layer (default -1: the top one)")
    fe.add_argument("--state", choices=("h", "c"), default="h", help="h, or for an LSTM c (default h)")
    fe.add_argument("--corpus", help="training text: a built-in corpus name or a UTF-8 file (default: the model's "
                                     "held-out text), cut at 200,000 characters")
    fe.add_argument("--eval", metavar="FILE", help="measure on this UTF-8 file instead of the training text")
    fe.add_argument("--size", type=int, help="features in the dictionary (default 8 x the hidden size)")
    fe.add_argument("--k", type=int, default=32, help="features active per character (default 32)")
    fe.add_argument("--steps", type=int, help="training updates (default: the library's)")
    fe.add_argument("--feature", type=int, help="also report this feature: its top activations and labels")
    fe.add_argument("--top", type=int, default=10, help="separated peaks to list with --feature (default 10)")
    fe.add_argument("--out", help="the cache folder (default: $RNNVIZ_FEATURES_DIR or atlas_cache/features)")
    fe.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    fe.add_argument("--json", action="store_true", help="print one JSON object (docs/cli.md names its fields)")
    fe.set_defaults(fn=cmd_features)
    # issue 29: a model trained elsewhere becomes an rnnviz checkpoint (rnnviz.interop)
    im = sub.add_parser("import", help="convert a PyTorch state dict (.pt/.pth/.safetensors), a d2l model, a "
                                       "min-char-rnn .npz or a Keras .keras/.h5 model into an rnnviz checkpoint folder")
    im.add_argument("source", help="the model file")
    im.add_argument("--out", required=True, help="the checkpoint folder to write (must not exist yet)")
    im.add_argument("--vocab", help="the characters in id order: a JSON list, a JSON object (char -> id or id -> "
                                    "char), or a text file whose sorted characters are the vocabulary (default: "
                                    "the file's own list)")
    im.add_argument("--cell", choices=CELLS, help="refuse unless the file holds this cell")
    im.add_argument("--json", action="store_true", help="print the config.json's 'imported' section as JSON")
    im.set_defaults(fn=cmd_import)
    # issue 31: a classroom served by several processes behind HAProxy (rnnviz.serving)
    sv = sub.add_parser("serve", help="serve the app to a class: N Streamlit processes behind HAProxy, which keeps "
                                      "each browser on one process by a cookie; a process that dies is restarted")
    sv.add_argument("--processes", type=int, help="Streamlit processes (default: the number of cores)")
    sv.add_argument("--no-warm", action="store_true", help="skip opening the first pages once in each process "
                    "before students come (the warm-up: models loaded, first charts cached, pages registered)")
    sv.add_argument("--port", type=int, default=8501, help="the port students open (default 8501)")
    sv.add_argument("--address", default="0.0.0.0", help="the address the proxy listens on (default: all)")
    sv.add_argument("--logs", help="a folder that keeps each process's log and the proxy's configuration "
                                   "(default: a temporary folder, removed on exit)")
    sv.set_defaults(fn=cmd_serve)
    sh = sub.add_parser("shared", help="what the server processes of this machine share (rnnviz.shared_state): "
                                       "trainings running and waiting, locks held (builds, saves), the class board")
    sh.add_argument("--json", action="store_true", help="print JSON")
    sh.set_defaults(fn=cmd_shared)
    # issue 30: the 2015 paper's results (rnnviz.paper); one subcommand per result
    pa = sub.add_parser("paper", help="Karpathy, Johnson & Fei-Fei (2015) reproduced: the Table 1 grid, gate "
                                      "saturation, the error onion, training dynamics")
    paper_sub = pa.add_subparsers(dest="paper_command", required=True)
    pg = paper_sub.add_parser("grid", help="train cells x layers x parameter budgets with one recipe (Table 1); "
                                           "resumable: runs already in --out are skipped")
    pg.add_argument("--cells", nargs="+", choices=CELLS, help="cells to train (default: lstm gru rnn)")
    pg.add_argument("--layers", nargs="+", type=int, help="depths to train (default: 1 2)")
    pg.add_argument("--budgets", nargs="+", type=_budget_arg,
                    help="parameter budgets, e.g. 30k 120k 3.3M; each cell's width is matched to them")
    pg.add_argument("--steps", type=int, help="training steps of every run (default: the default grid's)")
    pg.add_argument("--corpus", help="tinyshakespeare (default), a built-in corpus name, a text file, or a folder "
                                     "of C files (*.c and *.h, concatenated)")
    pg.add_argument("--seed", type=int, help="the seed of every run (default 0)")
    pg.add_argument("--out", default="grid_runs", help="the results folder (default grid_runs); resumable")
    pg.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    pg.add_argument("--threads", type=int, default=1,
                    help="CPU threads for torch (default 1: models this small train fastest on one, and a GRU or "
                         "RNN step is many small operations that more threads slow down on a busy machine)")
    pg.add_argument("--json", action="store_true", help="print the results as JSON (docs/cli.md names the fields)")
    pg.set_defaults(fn=cmd_paper_grid)
    psa = paper_sub.add_parser("saturation", help="per layer and gate, the fraction of characters each unit's gate "
                                                  "is left- (< 0.1) or right-saturated (> 0.9), over held-out text")
    psa.add_argument("checkpoint")
    psa.add_argument("--text", help="a text file to read instead of the model's held-out text")
    psa.add_argument("--chars", type=int, default=10_000, help="characters of held-out text (default 10000)")
    psa.add_argument("--units", action="store_true", help="with --json: every unit's fractions, not the summary")
    psa.add_argument("--json", action="store_true", help="print JSON records (docs/cli.md names the fields)")
    psa.set_defaults(fn=cmd_paper_saturation)
    pon = paper_sub.add_parser("onion", help="the error analysis: errors (p < 0.5) peeled by n-gram oracle, dynamic "
                                             "memory, rare words, word model, punctuation and the rest")
    pon.add_argument("checkpoint")
    pon.add_argument("--text", help="a text file to read instead of the model's held-out text")
    pon.add_argument("--train", help="the training text file (default: the split the model's config records)")
    pon.add_argument("--chars", type=int, default=20_000, help="characters of held-out text (default 20000)")
    pon.add_argument("--max-order", type=int, default=9, help="highest n-gram order of the oracle (default 9)")
    pon.add_argument("--json", action="store_true", help='print {"chars", "errors", "categories": [...]}')
    pon.set_defaults(fn=cmd_paper_onion)
    pdy = paper_sub.add_parser("dynamics", help="symmetric KL between each training snapshot's predictions and "
                                                "n-grams of each order, over held-out text")
    pdy.add_argument("checkpoint")
    pdy.add_argument("--orders", type=_orders_arg, default=(1, 2, 3, 4, 5), help="n-gram orders, e.g. 1-5 or 1,3,5")
    pdy.add_argument("--text", help="a text file to read instead of the model's held-out text")
    pdy.add_argument("--train", help="the training text file (default: the split the model's config records)")
    pdy.add_argument("--chars", type=int, default=5_000, help="characters of held-out text (default 5000)")
    pdy.add_argument("--json", action="store_true", help='print {"steps", "orders", "kl": [[...]]}')
    pdy.set_defaults(fn=cmd_paper_dynamics)
    pan = paper_sub.add_parser("analyses", help="recompute the shipped analyses of the shipped models "
                                                "(pretrained/paper/analyses.json)")
    pan.add_argument("--out", help="write the JSON here (default: print it)")
    pan.set_defaults(fn=cmd_paper_analyses)
    return p


def _budget_arg(text: str) -> int:
    """'30k', '1.2M' or '64000' -> a whole number of parameters."""
    t = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    try:
        n = round(float(t[:-1] if scale > 1 else t) * scale)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a budget is a number of parameters such as 30k or 1.2M, not {text!r}")
    if n < 1:
        raise argparse.ArgumentTypeError(f"a budget must be positive, not {text!r}")
    return n


def cmd_paper_grid(args) -> int:
    import json

    from .paper import grid
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = grid.spec_from_options(cells=args.cells, layers=args.layers, budgets=args.budgets, steps=args.steps,
                                  corpus=args.corpus, seed=args.seed)
    quiet = args.json
    for tarball in grid.linux_sources() if not quiet else ():
        print(f"note: {tarball} is here: unpack it and pass --corpus with its folder to train on the kernel's C "
              "files, as the paper did", file=sys.stderr)

    def report(done, total, run=None, loss=None, corpus=None, **_):
        if not quiet and corpus:
            print(f"corpus: {corpus['name']}, {corpus['chars']:,} characters ({corpus['val_chars']:,} held out)"
                  + (f"; {corpus['notice']}" if corpus.get("notice") else ""), file=sys.stderr, flush=True)
        if not quiet and run is not None and loss is None:
            print(f"[{done + 1}/{total}] {run}", file=sys.stderr, flush=True)

    rows = grid.run_grid(spec, args.out, device=args.device, report=report,
                         command=grid.grid_command(spec, args.out, args.device, args.threads))
    if args.json:
        print(json.dumps({"spec": spec.to_dict(), "out": str(args.out), "rows": rows}))
        return 0
    print(grid.format_table(rows))
    print(f"results: {Path(args.out) / grid.RESULTS_JSON} and {Path(args.out) / grid.RESULTS_CSV}")
    return 0


def _orders_arg(text: str) -> tuple[int, ...]:
    """'1-5' or '1,3,5' -> (1, 2, 3, 4, 5) / (1, 3, 5)."""
    try:
        if "-" in text:
            lo, hi = (int(x) for x in text.split("-", 1))
            orders = tuple(range(lo, hi + 1))
        else:
            orders = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"orders are a range such as 1-5 or a list such as 1,3,5, not {text!r}")
    if not orders or min(orders) < 1:
        raise argparse.ArgumentTypeError(f"orders must be whole numbers of at least 1, not {text!r}")
    return orders


def _paper_text(args, config: dict) -> str:
    """--text's file, or the first --chars characters of the model's held-out excerpt (a notice on stderr)."""
    if args.text:
        return decode_utf8(Path(args.text).read_bytes(), args.text)
    from .paper.texts import held_out_sample
    text, notice = held_out_sample(config, args.chars)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    return text


def _paper_train_text(args, config: dict) -> str:
    """--train's file, or the training split the model's config records (a notice on stderr)."""
    if args.train:
        return decode_utf8(Path(args.train).read_bytes(), args.train)
    from .ngram import training_text
    train, notice = training_text(config)
    if notice:
        print(f"note: {notice}", file=sys.stderr)
    return train


def cmd_paper_saturation(args) -> int:
    import json

    from .paper.saturation import layer_saturation, saturation_summary
    model, config = checkpoint.load(args.checkpoint)
    if model.cell == "rnn":
        raise ConfigError("a vanilla RNN has no gates to saturate: give an LSTM or a GRU")
    table = layer_saturation(model, _paper_text(args, config))
    frame = table if args.units else saturation_summary(table)
    if args.json:
        print(json.dumps(frame.to_dict(orient="records")))
    else:
        print(frame.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


def cmd_paper_onion(args) -> int:
    import json

    from .paper.onion import onion
    model, config = checkpoint.load(args.checkpoint)
    train = _paper_train_text(args, config)
    result = onion(model, _paper_text(args, config), train_text=train, max_order=args.max_order)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"{result.errors:,} errors (p < 0.5) in {result.chars:,} characters; n-gram orders "
          f"{result.orders[0]}-{result.orders[-1]}")
    for c in result.categories:
        print(f"  {c['name']:<15} {c['count']:>7,}  {c['share']:6.1%}")
    return 0


def cmd_paper_dynamics(args) -> int:
    import json

    from .paper.dynamics import dynamics, history_snapshots
    config = checkpoint.read_config(args.checkpoint)
    if not history.has_history(args.checkpoint):
        raise ConfigError(f"{args.checkpoint} has no training history (no history/step-N snapshots): "
                          "the dynamics need one; train with --history N to keep snapshots")
    train = _paper_train_text(args, config)
    result = dynamics(history_snapshots(args.checkpoint), _paper_text(args, config), orders=args.orders,
                      train_text=train)
    if args.json:
        print(json.dumps({"steps": result["steps"], "orders": result["orders"], "kl": result["kl"].tolist()}))
        return 0
    print("symmetric KL (nats/char) between each snapshot and each n-gram")
    print("step    " + "".join(f"{n:>8}-gram" for n in result["orders"]))
    for step, row in zip(result["steps"], result["kl"]):
        print(f"{step:<8}" + "".join(f"{x:>13.3f}" for x in row))
    return 0


def cmd_paper_analyses(args) -> int:
    import json

    from .paper.shipped import compute_shipped, write_shipped
    data = compute_shipped(report=lambda line: print(line, file=sys.stderr, flush=True))
    if args.out:
        write_shipped(data, Path(args.out))
        print(f"wrote {args.out}")
    else:
        print(json.dumps(data))
    return 0

def cmd_memory(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.measure:
        return _measure_memory(args)
    trainers, learning = {}, {}
    df = experiments.memory_experiment(cells=args.cells, gaps=args.gaps, steps_per_cell=args.steps,
                                       hidden_size=args.hidden, seed=args.seed, trainers=trainers,
                                       history=args.history, learning=learning)
    table = df.pivot(index="gap", columns="cell", values="accuracy")[args.cells]
    print(f"recall accuracy on {experiments.EVAL_SEGMENTS} fresh items per gap (chance {experiments.CHANCE:.3f}), "
          f"after {args.steps:,} steps per cell:")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    print("seconds of training: " + ", ".join(f"{c} {s:.1f}" for c, s in df.groupby("cell").seconds.first().items()))
    for cell, grew in learning.items():
        print(f"\n{cell.upper()} recall during training (rows: gap; columns: step):")
        print(grew.pivot(index="gap", columns="step", values="accuracy").to_string(float_format=lambda v: f"{v:.2f}"))
    for cell, (trainer, result) in trainers.items() if args.save else ():
        path = Path(args.save) / f"memory-{cell}"
        meta = {"name": path.name, **trainer.training_meta(result)}
        meta["memory"] = {"gaps": sorted(args.gaps), "recall": {int(g): float(a) for g, a in table[cell].items()}}
        checkpoint.save(trainer.model, path, meta=meta, dtype="float32", history=trainer.history)
        print(f"wrote {path}" + (f" with {len(trainer.history)} snapshots" if trainer.history else ""))
    return 0


def _measure_memory(args) -> int:
    """The Gradients page's memory section, as text: saved memory models, measured without training."""
    from . import lesson

    folder = Path(args.measure)
    models = {c: checkpoint.load(folder / f"memory-{c}")[0] for c in args.cells if (folder / f"memory-{c}").is_dir()}
    if not models:
        raise ConfigError(f"no memory-<cell> model ({', '.join(f'memory-{c}' for c in args.cells)}) in {folder}")
    table = experiments.recall_tables(models, gaps=args.gaps, seed=args.seed)
    print(f"recall accuracy on {experiments.EVAL_SEGMENTS} fresh items per gap (chance {experiments.CHANCE:.3f}):")
    print(table.pivot(index="gap", columns="cell", values="accuracy")[list(models)]
          .to_string(float_format=lambda v: f"{v:.3f}"))
    curves = lesson.memory_curves(models)
    at_gap = table[table.gap == lesson.MEMORY_GAP]
    if len(at_gap):  # the words read the recall at the gap of the gradient's example
        print("\n" + lesson.memory_summary(at_gap, curves).replace("**", ""))
    lstm = next((c for c in curves if c.cell == "lstm"), None)
    if lstm is not None:
        top = lesson.memory_units(lstm, models["lstm"], top=12)
        print(f"\nunits of memory-lstm by |dL/dc| at the key ({lesson.MEMORY_GAP - 1} steps before the recall):")
        print(f"{'unit':>6} {'share':>6} {'mean f':>7} {'prod f':>9}")
        for u in top:
            print(f"{'c' + str(u['unit']):>6} {u['share']:6.1%} {u['gate_mean']:7.3f} {u['gate_product']:9.2e}")
        print(lesson.memory_units_caption(top).split(" Each button")[0])
    return 0


def _parse_unit(spec: str) -> tuple[int, str, int]:
    parts = spec.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[2].isdigit():
        raise ConfigError(f"--unit takes LAYER:KIND:UNIT, e.g. 1:c:28, not {spec!r}")
    return int(parts[0]), parts[1], int(parts[2])


def _corpus_arg(spec: str | None):
    """--corpus as resolve_corpus takes it: None (the model's held-out text), a built-in name, or a file."""
    from .corpora import CORPORA

    if not spec:
        return None
    if spec in CORPORA:
        return spec
    if Path(spec).is_file():
        return Path(spec)
    raise ConfigError(f"--corpus {spec!r} is neither a built-in ({', '.join(CORPORA)}) nor a file")


def cmd_atlas(args) -> int:
    from . import atlas as atlas_mod

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, not {args.top}")
    if args.unit and args.top > atlas_mod.PEAKS:
        raise ConfigError(f"--top can be at most {atlas_mod.PEAKS} with --unit (the separated peaks an atlas keeps), "
                          f"not {args.top}")
    model, config = checkpoint.load(args.checkpoint)
    corpus = _corpus_arg(args.corpus)
    unit = _parse_unit(args.unit) if args.unit else None
    last = [0.0]

    def progress(done, total, message):
        now = time.monotonic()
        if not args.json and (now - last[0] > 2 or done == total):
            last[0] = now
            print(f"  {message}", file=sys.stderr, flush=True)

    at = atlas_mod.load_or_build(model, config, corpus, cache_dir=args.out, max_chars=args.chars,
                                 report=progress)
    if at.notice:
        print(f"note: {at.notice}", file=sys.stderr)
    if unit is not None:
        layer, kind, u = unit
        # separated peaks: one per place, not the neighbours of one peak
        top, bottom = at.peaks(layer, kind, u, "top", args.top), at.peaks(layer, kind, u, "bottom", args.top)
        labels = at.labels()
        mine = labels[(labels.layer == layer) & (labels.kind == kind) & (labels.unit == u)].dropna(subset=["score"])

        def rows(pairs):
            return [{"pos": p, "value": v, "context": at.context(p, args.width)[1]} for p, v in pairs]

        if args.json:
            import json
            out = {"unit": f"{layer}:{kind}:{u}", "corpus": at.name, "chars": len(at),
                   "separation": atlas_mod.SEPARATION, "top": rows(top), "bottom": rows(bottom),
                   "labels": [{"hypothesis": r.hypothesis, "score": float(r.score), "direction": r.direction,
                               "auroc": None if r.auroc != r.auroc else float(r.auroc), "corr": float(r.corr)}
                              for r in mine.itertuples()]}
            print(json.dumps(out, ensure_ascii=False))
        else:
            print(f"L{layer} {kind}{u} over {len(at):,} characters of {at.name}")
            for title, pairs in (("highest", top), ("lowest", bottom)):
                print(f"{title} (no two within {atlas_mod.SEPARATION} characters):")
                if len(pairs) < args.top:
                    print(f"  only {len(pairs)} such places in this corpus")
                for p, v in pairs:
                    start, ctx = at.context(p, args.width)
                    print(f"  {p:8d} {v:+.4f}  {ctx[:p - start]!r} [{at.text[p]!r}] {ctx[p - start + 1:]!r}")
            print("labels: " + ", ".join(f"{r.hypothesis} {r.score:.3f} ({r.direction})"
                                         for r in mine.head(5).itertuples()))
    else:
        best = at.best_units()
        print(f"atlas of {at.cell.upper()} {at.num_layers}x{at.hidden_size} over {len(at):,} characters of "
              f"{at.name}{' (cached at ' + str(at.path) + ')' if at.path else ' (not cached)'}")
        width = max([len("hypothesis")] + [len(h) for h in best.hypothesis])
        print(f"{'hypothesis':<{width}} {'unit':<10} {'direction':<44} {'auroc':>6} {'score':>6} {'r':>7}")
        flagged = False
        for r in best.itertuples():
            mark = " *" if getattr(r, "flagged", False) is True else ""
            flagged = flagged or bool(mark)
            print(f"{r.hypothesis:<{width}} {f'L{r.layer} {r.kind}{r.unit}':<10} "
                  f"{direction_words(r.direction, r.hypothesis, r.binary):<44} {r.auroc:6.3f} {r.score:6.3f} "
                  f"{r.corr:+7.3f}{mark}")
        if flagged:
            print("* too few characters or passages where it holds (or not) to call the best unit a detector")
    if args.export_lstmvis:
        paths = atlas_mod.export_lstmvis(at, args.export_lstmvis, model.vocab.chars)
        print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_saliency(args) -> int:
    # issue 11: ||d log p(c) / d e_s|| and gradient x input for every s <= T, c the true next character
    from .saliency import TargetError, default_target, saliency
    text = decode_utf8(Path(args.file).read_bytes(), args.file) if args.file else args.text
    model, _ = checkpoint.load(args.checkpoint)
    try:
        if args.target is None:
            if not isinstance(text, str) or len(text) < 2:
                raise TargetError("the text needs at least two characters")
            chosen = default_target(model, text)
            print(f"target #{chosen.target}: {chosen.describe()}", file=sys.stderr)
            args.target = chosen.target
        sal = saliency(model, text, args.target)["true"]
    except TargetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        import json
        print(json.dumps({"target": sal.target, "grad_norm": sal.grad_norm.tolist(),
                          "grad_x_input": sal.grad_x_input.tolist()}))
        return 0
    from .render import char_label
    print(f"target #{sal.target} '{char_label(text[sal.target])}', next '{char_label(sal.char)}' "
          f"(log p = {sal.logp:.4f}); the {min(args.top, sal.target + 1)} most influential positions:")
    print(f"{'position':>8} {'distance':>8} char {'grad_norm':>11} {'grad_x_input':>12}")
    for s in np.argsort(-sal.grad_norm, kind="stable")[: args.top]:
        print(f"{s:8d} {sal.target - s:8d} {char_label(text[s]):>4} {sal.grad_norm[s]:11.3e} "
              f"{sal.grad_x_input[s]:12.3e}")
    return 0


def cmd_edit(args) -> int:
    # the Why page's "Change a character" section, from a script
    from .counterfactual import Edit, counterfactual, prediction_length, summary
    from .render import char_label
    from .saliency import check_target, predicted_change
    text = decode_utf8(Path(args.file).read_bytes(), args.file) if args.file else args.text
    model, _ = checkpoint.load(args.checkpoint)
    if args.target is not None:
        check_target(text, args.target)
    edit = Edit(args.op, args.pos, "" if args.op == "delete" else args.char)
    cf = counterfactual(model, text, edit)
    pred = None  # an insert shifts everything after it: no gradient of one input describes that
    if args.op != "insert":
        length = None if args.target is None else prediction_length(args.target, args.pos, reach=len(text))
        pred = predicted_change(model, text, args.pos, args.char if args.op == "replace" else None, length)
    if args.json:
        import json

        def nan(a):
            return [None if not np.isfinite(x) else float(x) for x in a]  # JSON has no NaN
        print(json.dumps({"edit": edit.describe(text), "positions": cf.positions.tolist(),
                          "surprisal": nan(cf.surprisal), "surprisal_edited": nan(cf.surprisal_edited),
                          "predicted": None if pred is None else nan(pred[cf.positions])}))
        return 0
    print(summary(edit.describe(text), cf, pred, args.target, args.pos, reach=len(text)).replace("**", ""))
    if not len(cf.positions):
        return 0
    print(f"\n{'position':>8} {'after':>5} char {'before':>7} {'edited':>7} {'change':>7} {'predicted':>9}")
    d = np.nan_to_num(np.abs(cf.d_surprisal), nan=-1.0)
    for j in np.argsort(-d, kind="stable")[: args.top]:
        k = int(cf.positions[j])
        guess = "-" if pred is None or not np.isfinite(pred[k]) else f"{-pred[k]:+9.3f}"
        print(f"{k:8d} {k - args.pos:5d} {char_label(text[k]):>4} {cf.surprisal[j]:7.3f} {cf.surprisal_edited[j]:7.3f} "
              f"{cf.d_surprisal[j]:+7.3f} {guess:>9}")
    return 0


def cmd_ngram(args) -> int:
    from .ngram import fit_cached
    corpus = corpus_from_spec(args.corpus)
    train, held = split(corpus, 0.1)
    text = decode_utf8(Path(args.eval).read_bytes(), args.eval) if args.eval else held
    loss = fit_cached(train, args.order).loss(text)
    if args.json:
        import json
        print(json.dumps({"order": args.order, "loss": loss}))
    else:
        print(f"{args.order}-gram fitted on {len(train):,} characters of {corpus.name}: {loss:.4f} nats/char "
              f"({loss / math.log(2):.4f} bits/char) on {len(text):,} characters")
    return 0


def cmd_compare(args) -> int:
    import json

    from . import compare as cmp_mod
    from .ngram import fit_cached, training_text
    model, config = checkpoint.load(args.a)
    name_a = Path(args.a).name
    if args.file:
        text = decode_utf8(Path(args.file).read_bytes(), args.file)
    else:
        held = held_out(config)
        if held is None or not held.text:
            raise ConfigError("the corpus this checkpoint trained on is not on this machine: give --file")
        text = held.text
    if args.b.startswith("ngram:"):
        try:
            order = int(args.b.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"expected ngram:N with N a whole number, not {args.b!r}") from None
        train, notice = training_text(config)
        if notice:
            print(f"note: {notice}", file=sys.stderr)
        b = cmp_mod.ngram_scores(fit_cached(train, order, model.vocab), text)
    else:
        model_b, _ = checkpoint.load(args.b)
        b = cmp_mod.model_scores(model_b, text, Path(args.b).name)
    res = cmp_mod.compare(text, cmp_mod.model_scores(model, text, name_a), b)
    bd, acc, left = res.breakdown(), res.accuracy(), cmp_mod.left_out_message(res)
    if args.json:
        ma, mb = res.mean()
        print(json.dumps({"a": res.a.name, "b": res.b.name, "mean_a": ma, "mean_b": mb,
                          "classes": bd.to_dict("records"), "accuracy": acc.to_dict("records"),
                          "left_out": res.left_out}, default=lambda x: None if x != x else x))
        return 0
    print(cmp_mod.summary(res))
    if left:
        print(f"note: {left}")
    print(f"\n{'class':<24} {'chars':>8} {res.a.name[:14]:>14} {res.b.name[:14]:>14} {'A - B':>7} {'A wins':>7}")
    for r in bd.itertuples():
        print(f"{r._1:<24} {r.count:>8,} {r.mean_a:>14.3f} {r.mean_b:>14.3f} {r.diff:>+7.3f} {r.a_wins:>7.1%}")
    print(f"\nclosing-delimiter accuracy (argmax = true next character)\n{'model':<18} {'kind':<8} "
          f"{'distance':<8} {'count':>6} {'accuracy':>8}")
    for r in acc.itertuples():
        print(f"{r.model[:18]:<18} {r.kind:<8} {r.bucket:<8} {r.count:>6} "
              f"{'-' if r.count == 0 else format(r.accuracy, '.3f'):>8}")
    return 0


def cmd_cell(args) -> int:
    import json

    from .anatomy import cell_step
    from .render import char_label
    model, _ = checkpoint.load(args.checkpoint)
    text = decode_utf8(Path(args.file).read_bytes(), args.file)
    s = cell_step(model, text, args.pos, args.layer, args.unit, top=args.top)
    if args.json:
        print(json.dumps(s.to_json()))
        return 0
    print(f"{s.cell.upper()} layer {s.layer} unit {s.unit} at position {s.pos} '{char_label(s.char)}'")
    print("  " + "  ".join(f"{k} {v:+.4f}" for k, v in s.values.items()))
    print(f"{'gate':<5} {'input':>8} {'recurrent':>9} {'bias':>8} {'total':>8}  top contributors from h_(t-1)")
    for g, p in s.preact.items():
        top = ", ".join(f"h{j} {v:+.3f}" for j, v in s.contributors[g]) or "none (h_(t-1) is zero)"
        print(f"{g:<5} {p['input']:+8.4f} {p['recurrent']:+9.4f} {p['bias']:+8.4f} {s.total(g):+8.4f}  {top}")
    return 0



def cmd_circuit(args) -> int:
    import json

    from . import circuits
    from .render import char_label
    model, _ = checkpoint.load(args.checkpoint)
    text = decode_utf8(Path(args.file).read_bytes(), args.file)
    circ = circuits.circuit(model, text, args.pos, args.char, back=args.back, max_nodes=args.nodes,
                            method=args.method or circuits.DEFAULT_METHOD)
    if args.json:
        print(json.dumps(circ.to_json()))
        return 0
    tgt = circ.target
    print(f"target: after #{tgt['pos']} '{char_label(text[tgt['pos']])}', log p('{char_label(tgt['char'])}') = "
          f"{tgt['logp']:.4f}; {len(circ.nodes)} of {circ.candidates:,} nodes, coverage {circ.coverage:.3f}, "
          f"r² {circ.r2:.3f}, slope {circ.slope:.2f} (through the origin), method {circ.method}")
    print(circuits.story(model, circ, text))
    print(f"\n{'node':<16} {'char':>4} {'value':>8} {'attribution':>11} {'ablation':>9}")
    for n in circ.nodes:
        print(f"{n.label:<16} {char_label(text[n.pos]):>4} {n.value:+8.3f} {n.attribution:+11.4f} {n.ablation:+9.4f}")
    print(f"\n{len(circ.edges)} edges (src -> dst: dst's value minus its value with src zeroed)")
    return 0


def cmd_features(args) -> int:
    import json

    from . import features
    from .atlas.corpus import resolve_corpus
    from .dashboard import array_peaks, column_labels

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.top < 1:
        raise ConfigError(f"--top must be at least 1, not {args.top}")
    model, config = checkpoint.load(args.checkpoint)
    corpus = _corpus_arg(args.corpus)
    ct = resolve_corpus(config, corpus)
    for notice in ct.notices:
        print(f"note: {notice}", file=sys.stderr)
    kw = {} if args.steps is None else {"steps": args.steps}
    cfg = features.SAEConfig(layer=args.layer, state=args.state, size=args.size, k=args.k, **kw)
    last = [0.0]

    def progress(fraction, message):
        now = time.monotonic()
        if now - last[0] > 2 or fraction >= 1:
            last[0] = now
            print(f"  {message}", file=sys.stderr, flush=True)

    d = features.load_or_train(model, ct.text, ct.name, cfg, args.out, progress=progress,
                               model_name=Path(args.checkpoint).name)
    if d.cfg.get("retrained_because"):
        print(f"note: the cached dictionary was damaged and was retrained: {d.cfg['retrained_because']}",
              file=sys.stderr)
    text = decode_utf8(Path(args.eval).read_bytes(), args.eval) if args.eval else ct.text
    m = features.metrics(model, d, text)
    best = features.units_vs_features(model, d, text)
    out = {"path": str(d.path) if d.path else None, "layer": d.layer, "state": d.state, "d_in": d.d_in,
           "d_sae": d.d_sae, "k": d.k, "corpus": ct.name, "train_chars": len(ct.text),
           "evaluated_on": args.eval or "the training corpus", "eval_chars": len(text), "metrics": m,
           "best": {r["hypothesis"]: {"unit": r["unit"], "feature": r["feature"], "winner": r["winner"],
                                      "chance": r["chance"], "flagged": r["evidence"]["flagged"]} for r in best}}
    if args.feature is not None:
        col = (features.corpus_codes(model, d, text).column(args.feature) if not args.eval
               else features.feature_acts(model, d, text, [args.feature])[:, 0])
        labels = column_labels(col[:, None], text).dropna(subset=["score"]).sort_values("score", ascending=False)
        out["feature"] = {"index": args.feature,
                          "top": [{"pos": p, "value": v} for p, v in array_peaks(col, "top", args.top,
                                                                                  active_only=True)],
                          "frequency": float((col > 0).mean()), "max": float(col.max()),
                          "labels": [{"hypothesis": r.hypothesis, "score": float(r.score), "direction": r.direction,
                                      "flagged": bool(r.flagged)} for r in labels.itertuples()],
                          "loadings": [{"unit": u, "weight": w} for u, w in features.loadings(d, args.feature)]}
    if args.json:
        print(json.dumps(out, ensure_ascii=False, default=float))
        return 0
    print(f"dictionary of {d.d_sae:,} features (k {d.k}) over layer {d.layer} {d.state}, trained on {len(ct.text):,} "
          f"characters of {ct.name}; saved at {d.path}")
    print(f"measured on {out['evaluated_on']} ({len(text):,} characters):")
    for key, value in m.items():
        print(f"  {key:<18} {value:.4f}" if isinstance(value, float) else f"  {key:<18} {value}")
    print(f"{'hypothesis':<28} {'best unit':<12} {'score':>6}  {'best feature':<12} {'score':>6}  chance")
    for r in best:
        u, f = r["unit"], r["feature"]
        print(f"{r['hypothesis']:<28} {'L' + str(u['layer']) + ' ' + u['state'] + str(u['unit']):<12} "
              f"{u['score']:6.3f}  {'f' + str(f['feature']):<12} {f['score']:6.3f}  {r['chance']:.3f}"
              f"{' (too little evidence)' if r['evidence']['flagged'] else ''}")
    if "feature" in out:
        fo = out["feature"]
        print(f"feature {args.feature}: active on {fo['frequency']:.1%} of characters, max {fo['max']:.3f}")
        for t in fo["top"]:
            p = t["pos"]
            print(f"  {p:8d} {t['value']:.4f}  {text[max(0, p - 30):p]!r} [{text[p]!r}] {text[p + 1:p + 10]!r}")
        print("labels: " + ", ".join(f"{x['hypothesis']} {x['score']:.3f}" for x in fo["labels"][:5]))
    return 0


def cmd_import(args) -> int:
    import json

    from .interop import import_model
    out = import_model(args.source, args.out, vocab=args.vocab, cell=args.cell)
    config = checkpoint.read_config(out)
    imported = config["imported"]
    if args.json:
        print(json.dumps({"out": str(out), **imported}, ensure_ascii=False))
        return 0
    m = config["model"]
    print(f"wrote {out}: a {m['cell'].upper()} of {m['num_layers']} x {m['hidden_size']} over "
          f"{len(m['vocab']) - 1} characters, from {imported['source_format']} (sha256 {imported['sha256'][:12]}...)")
    for line in imported["conversions"]:
        print(f"  converted: {line}")
    for line in imported["notices"]:
        print(f"  note: {line}")
    return 0


def cmd_serve(args) -> int:
    from .serving import ServeConfig, Supervisor

    config = ServeConfig(port=args.port, address=args.address, run_dir=Path(args.logs) if args.logs else None,
                         warm=not args.no_warm)
    if args.processes is not None:
        config.processes = args.processes
    return Supervisor(config).run()


def cmd_shared(args) -> int:
    import json

    from . import shared_state

    state = shared_state.default()
    if state is None:
        raise ConfigError(f"no shared state file can be opened at {shared_state.db_path()} (see the log line above)")
    st = state.status()
    if args.json:
        print(json.dumps(st, indent=2))
        return 0

    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    print(f"{st['file']}: {n(st['running'], 'training')} running, {st['waiting']} waiting; "
          f"{n(len(st['locks']), 'lock')} held; {n(st['board_entries'], 'nickname')} on the class board")
    for j in st["jobs"]:
        since = f"running {j['running_s']} s" if j["state"] == "running" else f"waiting {j['waited_s']} s"
        print(f"  job  pid {j['pid']} on {j['host']}: {since} (expected {j['expected_s']} s)")
    for lk in st["locks"]:
        print(f"  lock {lk['key']}: pid {lk['pid']} on {lk['host']}, heartbeat {lk['heartbeat_age_s']} s ago")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "trace" and not args.describe and not args.checkpoint:
        parser().error("trace needs a checkpoint folder (or --describe)")
    try:
        return args.fn(args)
    except RnnvizError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
