"""The Table 1 grid (rnnviz.paper.grid): parameter matching against real models, resumable runs, the
results files, the CLI's JSON, the C-folder corpus, the job, and bench.gpu without a GPU."""
import csv
import json
import random

import pytest
import torch

from rnnviz import cli
from rnnviz.errors import ConfigError
from rnnviz.model import CELLS, build
from rnnviz.paper import grid


@pytest.fixture
def tiny_corpus(tmp_path):
    """A made-up text of words, long enough for 2 steps of 32 x 64 and a held-out tenth."""
    rng = random.Random(0)
    words = ["the", "king", "shall", "speak", "to", "my", "lord", "and", "queen", "now"]
    text = "\n".join(" ".join(rng.choice(words) for _ in range(9)) for _ in range(200)) + "\n"
    path = tmp_path / "tiny.txt"
    path.write_text(text, encoding="utf-8")
    return path


def tiny_spec(corpus, **kw) -> grid.GridSpec:
    base = dict(cells=("lstm", "gru", "rnn"), layers=(1, 2), budgets=(2_000, 4_000), steps=2, corpus=str(corpus),
                eval_chars=300)
    return grid.GridSpec(**{**base, **kw}).validate()


@pytest.fixture
def trainings(monkeypatch):
    """Counts the runs actually trained (grid.train_one calls)."""
    calls = []
    real = grid.train_one

    def counted(run, *a, **kw):
        calls.append(run.name)
        return real(run, *a, **kw)
    monkeypatch.setattr(grid, "train_one", counted)
    return calls


@pytest.mark.parametrize("cell", CELLS)
def test_param_count_is_the_real_models_count(cell):
    for layers in (1, 2, 3):
        for width, vocab, embed in ((1, 2, 1), (17, 40, 8), (62, 66, 32)):
            model = build([chr(65 + i) for i in range(vocab - 1)], cell, width, layers, embed_size=embed)
            assert len(model.vocab) == vocab
            real = sum(p.numel() for p in model.parameters())
            assert grid.param_count(cell, layers, width, vocab, embed) == real, (cell, layers, width)


@pytest.mark.parametrize("cell", CELLS)
def test_width_for_budget_is_the_closest_width(cell):
    for layers in (1, 2, 3):
        for budget in (5_000, 30_000, 120_000, 1_000_000):
            w = grid.width_for_budget(cell, layers, budget, vocab=66)
            gap = abs(grid.param_count(cell, layers, w, 66) - budget)
            for other in (w - 1, w + 1):
                if other >= 1:  # no neighbour is closer: w is within the closest step of the budget
                    assert gap <= abs(grid.param_count(cell, layers, other, 66) - budget)
    with pytest.raises(ConfigError, match="wider than 1024 units"):  # CharRNN's widest: never a silent cap
        grid.width_for_budget(cell, 1, 20_000_000, vocab=66)


def test_default_budgets_are_matched_across_cells():
    spec = grid.default_spec()
    runs = grid.plan(spec, vocab=66)
    assert len(runs) == 3 * 2 * 2
    for r in runs:  # within 3% of its budget, so cells of one budget differ by at most ~6%
        assert abs(r.params - r.budget) <= 0.03 * r.budget, r
    widths = {(r.cell, r.layers, r.budget): r.width for r in runs}
    # fewer gate blocks, wider layers: the RNN is the widest at every budget and depth
    for budget in spec.budgets:
        for layers in spec.layers:
            assert widths["lstm", layers, budget] < widths["gru", layers, budget] < widths["rnn", layers, budget]


def test_a_second_run_skips_finished_runs_and_retrains_damaged_ones(tmp_path, tiny_corpus, trainings, one_thread):
    spec, out = tiny_spec(tiny_corpus, cells=("lstm", "rnn"), layers=(1,)), tmp_path / "out"
    first = grid.run_grid(spec, out)
    assert len(trainings) == 4 and len(first) == 4
    again = grid.run_grid(spec, out)
    assert len(trainings) == 4 and again == first  # nothing trained the second time
    (out / "runs" / "rnn-1L-4000.json").unlink()
    (out / "runs" / "lstm-1L-2000.json").write_text('{"recipe": {"steps": 2', encoding="utf-8")  # half a write
    third = grid.run_grid(spec, out)
    assert sorted(trainings[4:]) == ["lstm-1L-2000", "rnn-1L-4000"]
    assert [(r["cell"], r["layers"], r["budget"]) for r in third] == [(r["cell"], r["layers"], r["budget"]) for r in first]
    grid.run_grid(tiny_spec(tiny_corpus, steps=3, cells=("lstm",), layers=(1,), budgets=(2_000,)), out)
    assert trainings[6:] == ["lstm-1L-2000"]  # another recipe: the finished run of 2 steps does not count


def test_results_files_have_the_columns_and_the_models_numbers(tmp_path, tiny_corpus, one_thread):
    spec = tiny_spec(tiny_corpus, cells=("lstm", "rnn"), layers=(2,), budgets=(3_000,))
    rows = grid.run_grid(spec, tmp_path, command="the command")
    with open(tmp_path / grid.RESULTS_CSV, newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(grid.COLUMNS) and len(table) == 2
    data = json.loads((tmp_path / grid.RESULTS_JSON).read_text())
    assert data["spec"] == spec.to_dict() and data["command"] == "the command" and data["machine"]
    assert data["rows"] == rows == grid.load_results(tmp_path)
    vocab = len(set(tiny_corpus.read_text())) + 1  # and UNK
    for r, t in zip(rows, table):
        assert r["params"] == grid.param_count(r["cell"], 2, r["width"], vocab, spec.embed)
        assert r["steps"] == 2 and r["device"] == "cpu" and 0 < r["val_loss"] < 10 and 0 < r["train_loss"] < 10
        assert float(t["val_loss"]) == r["val_loss"] and int(t["width"]) == r["width"]
    (tmp_path / grid.RESULTS_JSON).write_text('{"rows": [{"cell": "lstm"}]}')
    with pytest.raises(ConfigError, match="not a grid results file"):
        grid.load_results(tmp_path)


def test_stop_event_keeps_finished_runs_only(tmp_path, tiny_corpus, one_thread):
    import threading
    stop = threading.Event()

    def report(done, total, run=None, loss=None, **_):
        if done == 1 and loss is None:  # the second run starts: stop it
            stop.set()
    rows = grid.run_grid(tiny_spec(tiny_corpus, cells=("lstm", "rnn"), layers=(1,)), tmp_path, stop_event=stop,
                         report=report)
    assert len(rows) == 1 and sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["lstm-1L-2000.json"]
    assert grid.load_results(tmp_path) == rows


def test_cli_json(tmp_path, tiny_corpus, capsys, one_thread):
    code = cli.main(["paper", "grid", "--cells", "gru", "--layers", "1", "--budgets", "3k", "--steps", "2",
                     "--corpus", str(tiny_corpus), "--out", str(tmp_path), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["spec"]["budgets"] == [3000] and out["spec"]["steps"] == 2
    (row,) = out["rows"]
    assert set(row) == set(grid.COLUMNS) and row["cell"] == "gru" and row["budget"] == 3000
    recorded = json.loads((tmp_path / grid.RESULTS_JSON).read_text())["command"]
    assert recorded.startswith("python -m rnnviz paper grid --cells gru --layers 1 --budgets 3000 --steps 2")
    assert cli.main(["paper", "grid", "--corpus", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 1
    assert "is not tinyshakespeare" in capsys.readouterr().err


def test_a_folder_of_c_files_is_a_corpus_held_out_by_file(tmp_path, capsys, one_thread):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i, name in enumerate(("a.c", "b.h", "sub/c.c", "sub/d.c")):
        (src / name).write_text(f"int f{i}(void) {{ return {i}; }}\n" * (10 + i), encoding="utf-8")
    (src / "notes.txt").write_text("not C", encoding="utf-8")
    corpus = grid.grid_corpus(str(src))
    assert [d[0] for d in corpus.documents] == ["a.c", "b.h", "sub/c.c", "sub/d.c"]
    assert "4 .c/.h files" in corpus.notice and "not C" not in corpus.text
    from rnnviz.corpora import split
    train, val = split(corpus, 0.1)
    assert val == (src / "sub" / "d.c").read_text() and train + val == corpus.text
    assert cli.main(["paper", "grid", "--corpus", str(src), "--cells", "rnn", "--layers", "1", "--budgets", "1k",
                     "--steps", "1", "--out", str(tmp_path / "out")]) == 0
    assert "4 .c/.h files of 4 under" in capsys.readouterr().err  # the command says what it trains on
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no .c or .h files"):
        grid.grid_corpus(str(tmp_path / "empty"))


def test_grid_job_runs_the_grid_in_a_worker(tmp_path, tiny_corpus):
    job = grid.grid_job(tiny_spec(tiny_corpus, cells=("rnn",), layers=(1,)), tmp_path, threads=1).start()
    job.join(timeout=60)
    assert job.error is None and job.snapshot()["state"] == "finished"
    assert [r["budget"] for r in job.result] == [2_000, 4_000] == [r["budget"] for r in grid.load_results(tmp_path)]
    assert job.snapshot()["done"] == job.snapshot()["total"] == 2


def test_shipped_results_are_the_default_grid():
    data = grid.shipped_results()
    assert data["spec"] == grid.default_spec().to_dict()
    assert data["command"].startswith("python -m rnnviz paper grid") and data["machine"] and data["note"]
    rows = data["rows"]
    vocab = data["corpus"]["vocab"]
    assert sorted((r["cell"], r["layers"], r["budget"]) for r in rows) == sorted(
        (r.cell, r.layers, r.budget) for r in grid.plan(grid.default_spec(), vocab))
    for r in rows:  # each width is the code's match for its budget, and the count is that model's
        assert r["width"] == grid.width_for_budget(r["cell"], r["layers"], r["budget"], vocab)
        assert r["params"] == grid.param_count(r["cell"], r["layers"], r["width"], vocab)
        assert r["steps"] == grid.default_spec().steps and r["val_loss"] < 4.2  # below uniform: ln(66) = 4.19


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: bench.gpu runs for real")
def test_bench_gpu_says_it_needs_a_gpu_and_exits_0(capsys):
    from bench import gpu
    assert gpu.main([]) == 0
    assert "needs a CUDA GPU" in capsys.readouterr().out


def test_bench_gpu_checks_run_with_the_cpu_standing_in(shakespeare_text, capsys, one_thread):
    """The GPU checks' code, run with the CPU in the GPU's place: the same device twice agrees exactly."""
    from bench import gpu
    ok, speed, trainer = gpu.check_training(3, gpu="cpu", val_chars=300)
    assert ok and speed["gpu"] > 0 and speed["cpu"] > 0 and trainer.step == 3
    assert gpu.check_trace(trainer, shakespeare_text[:200], gpu="cpu")
    out = capsys.readouterr().out
    assert "largest loss difference over 3 steps 0.00e+00" in out and "largest difference 0.00e+00" in out
