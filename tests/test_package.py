"""The package: pyproject.toml against requirements.txt, the top-level notebook API, the wheel installed
apart from the checkout, and the Shakespeare recipes' outside corpus (--corpus, $RNNVIZ_TINYSHAKESPEARE,
the sha256 check)."""
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
import types
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import rnnviz
from rnnviz import checkpoint, recipes
from rnnviz.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _by_name(lines) -> dict:
    reqs = [Requirement(line) for line in lines]
    out = {canonicalize_name(r.name): r.specifier for r in reqs}
    assert len(out) == len(reqs), "a requirement is listed twice"
    return out


def test_requirements_txt_is_the_dependencies_plus_the_app_extra():
    """The rule: requirements.txt (what dev.py installs) == [project] dependencies ∪ the `app` extra,
    name by name with the same specifiers, the two parts disjoint. streamlit is only in the extra, so
    `pip install .` gives the library (which never imports streamlit) without it."""
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    txt = _by_name([line for line in lines if line])
    deps = _by_name(PYPROJECT["project"]["dependencies"])
    app = _by_name(PYPROJECT["project"]["optional-dependencies"]["app"])
    assert not set(deps) & set(app)
    assert txt == {**deps, **app}
    assert "streamlit" in app and "torch" in deps
    assert deps["torch"].contains("2.13.0")
    assert not deps["torch"].contains("2.13.1")  # a newer torch cannot be installed here


def test_project_metadata():
    project = PYPROJECT["project"]
    assert project["name"] == "rnnviz" and project["requires-python"] == ">=3.11"
    assert project["scripts"] == {"rnnviz": "rnnviz.cli:main"}
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "rnnviz.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", rnnviz.__version__)
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"] == ["rnnviz*"]


def test_top_level_names_leave_the_submodules_alone():
    import rnnviz.checkpoint
    import rnnviz.gradients
    import rnnviz.sampling
    import rnnviz.trace
    from rnnviz.trace import Trace, trace

    submodules = {m.name for m in pkgutil.iter_modules(rnnviz.__path__)}
    assert {"trace", "sampling", "gradients", "checkpoint", "atlas"} <= submodules
    assert not submodules & set(rnnviz.__all__)
    for name in ("trace", "sampling", "gradients", "checkpoint"):
        assert isinstance(getattr(rnnviz, name), types.ModuleType), name
    assert callable(trace) and rnnviz.trace.trace is trace
    model = rnnviz.load(ROOT / "pretrained" / "quotes-lstm")
    tr = rnnviz.trace_text(model, "x = 'a'\n")
    assert isinstance(tr, Trace) and tr.layers[0]["c"].shape == (8, 64)
    assert rnnviz.Clamp is rnnviz.sampling.Clamp
    with pytest.raises(AttributeError):
        rnnviz.no_such_name


def test_importing_rnnviz_does_not_import_torch():
    out = subprocess.run([sys.executable, "-c", "import sys, rnnviz; print('torch' in sys.modules)"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _notebook_example() -> str:
    doc = (ROOT / "docs" / "cli.md").read_text()
    section = doc[doc.index("## Using the library from a notebook"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "import rnnviz" in code and '"pretrained/' in code
    return code.replace('"pretrained/', json.dumps(str(ROOT / "pretrained"))[:-1] + "/")


@pytest.mark.slow
def test_the_wheel_installs_and_runs_apart_from_the_checkout(tmp_path):
    """Build the wheel from a copy of the sources, install it with --target (its dependencies come
    from this venv's site-packages), and from another folder, the checkout off sys.path: import it,
    run `rnnviz --help` and `rnnviz sample`, and run the notebook example of docs/cli.md."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "rnnviz", src / "rnnviz", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                            str(src)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr  # needs setuptools>=70.1 in this venv
    (wheel,) = (tmp_path / "dist").glob("rnnviz-*.whl")
    assert wheel.name.startswith(f"rnnviz-{rnnviz.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    packages = {str(Path(n).parent) for n in names if n.endswith("/__init__.py")}
    # every package of the checkout (atlas/, plots/, interop/, ...) and every module in it
    subpackages = [p for p in (ROOT / "rnnviz").iterdir() if (p / "__init__.py").is_file()]
    assert {"rnnviz/atlas", "rnnviz/plots", "rnnviz/interop"} <= {f"rnnviz/{p.name}" for p in subpackages}
    assert packages == {"rnnviz"} | {f"rnnviz/{p.name}" for p in subpackages}
    assert {f"rnnviz/{p.name}" for p in (ROOT / "rnnviz").glob("*.py")} <= set(names)
    for package in subpackages:
        assert {f"rnnviz/{package.name}/{p.name}" for p in package.glob("*.py")} <= set(names)

    site = tmp_path / "site"
    inst = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    env["PYTHONPATH"] = str(site)
    env["RNNVIZ_ATLAS_DIR"] = str(tmp_path / "atlas_cache")

    def run(*args):
        r = subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    where = run("-c", "import os, sys, rnnviz; print(rnnviz.__file__); "
                      "print(*(os.path.realpath(p or '.') for p in sys.path), sep='\\n')").splitlines()
    assert Path(where[0]).resolve() == (site / "rnnviz" / "__init__.py").resolve()
    assert str(ROOT.resolve()) not in where[1:]
    script = site / "bin" / "rnnviz"  # the console script; run with this python whatever its shebang says
    assert "rnnviz.cli" in script.read_text()
    assert "usage:" in run(str(script), "--help") and "train" in run(str(script), "--help")
    out = run(str(script), "sample", str(ROOT / "pretrained" / "shakespeare-lstm"), "--length", "50", "--seed", "1")
    assert len(out) >= 50
    code = _notebook_example()
    out = run("-c", f"import rnnviz, sys\nassert rnnviz.__file__.startswith({str(site)!r})\n{code}")
    assert "score" in out  # units.head(3) printed


# --- the Shakespeare recipes' outside corpus --------------------------------------------------------

TINY = ["--steps", "2", "--hidden", "8", "--layers", "1", "--seq-len", "16", "--batch", "2", "--threads", "1",
        "--eval-every", "1000"]


def test_the_recorded_sha256_is_the_shipped_models():
    for name in ("shakespeare-lstm", "shakespeare-gru", "shakespeare-rnn"):
        corpus = json.loads((ROOT / "pretrained" / name / "config.json").read_text())["corpus"]
        assert (corpus["name"], corpus["sha256"], corpus["chars"]) == \
            (recipes.TINY.name, recipes.TINY.sha256, recipes.TINY.chars)
        assert recipes.RECIPES[name].outside is recipes.TINY


def test_a_missing_corpus_is_one_line_saying_what_to_pass(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere" / "tinyshakespeare.txt"
    monkeypatch.setenv(recipes.SHAKESPEARE_ENV, str(missing))
    assert main(["train", "--recipe", "shakespeare-lstm", *TINY, "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    assert str(missing) in err and "--corpus PATH" in err and recipes.SHAKESPEARE_ENV in err
    assert "char-rnn" in err and "1,115,394" in err
    assert not (tmp_path / "m").exists()


def test_another_corpus_is_refused_unless_asked(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setenv(recipes.SHAKESPEARE_ENV, str(tmp_path / "missing.txt"))
    small = tmp_path / "small.txt"
    small.write_text("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 20)
    args = ["train", "--recipe", "shakespeare-gru", "--corpus", str(small), *TINY, "--out", str(tmp_path / "m")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--allow-other-corpus" in err and recipes.TINY.sha256[:12] in err
    assert not (tmp_path / "m").exists()
    assert main([*args, "--allow-other-corpus"]) == 0
    assert "note:" in capsys.readouterr().err
    _, config = checkpoint.load(tmp_path / "m")
    assert config["recipe"] == "shakespeare-gru" and config["corpus"]["name"] == "small.txt"
    assert config["training"]["steps"] == 2 and config["model"]["cell"] == "gru"


def test_the_real_file_under_any_name_is_taken_and_recorded_by_its_name(tmp_path, monkeypatch, capsys):
    from conftest import SHAKESPEARE

    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} is not on this machine")
    copy = tmp_path / "input.txt"  # as char-rnn names it
    shutil.copy(SHAKESPEARE, copy)
    monkeypatch.setenv(recipes.SHAKESPEARE_ENV, str(copy))
    corpus = recipes.recipe_corpus(recipes.RECIPES["shakespeare-lstm"], "shakespeare-lstm")
    assert corpus.name == "tinyshakespeare.txt" and len(corpus.text) == recipes.TINY.chars
    assert capsys.readouterr().err == ""


def test_quick_falls_back_to_the_built_in_corpus():
    quick = recipes.RECIPES["quick"]
    assert quick.outside is None
    assert quick.corpus == "shakespeare" or Path(quick.corpus).is_file()
