"""The README's commands and the docs' links keep working: dev.py's verbs, every relative link and anchor,
the screenshots (there, small, remade by the script), and every `python -m rnnviz VERB` a verb the CLI knows."""
import ast
import re
import subprocess
import sys
from pathlib import Path

from rnnviz import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
IMG_BUDGET = 500 * 1024  # bytes for every image in docs/img: the README is a front door, not a gallery

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose(text: str) -> str:
    """The markdown without its code blocks and code spans, where brackets are code, not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _links(path: Path) -> list[tuple[bool, str]]:
    """(is an image, target) of every markdown link in a file's prose."""
    return [(bang == "!", target) for bang, _, target in LINK.findall(_prose(path.read_text(encoding="utf-8")))]


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text lowercased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "")
    text = re.sub(r"(\*\*|__|\*|_)(\S(?:.*?\S)?)\1", r"\2", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a markdown file offers: its headings' slugs (repeats numbered -1, -2, ...) and <a id>s."""
    text = path.read_text(encoding="utf-8")
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", FENCE.sub("", text), re.M):
        slug = github_slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    found |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", text))
    return found


def test_github_slug_rule():
    """Anchors as GitHub writes them: the old README linked to these two headings by these slugs."""
    assert github_slug("Teaching mode: the tour and the guessing game") == "teaching-mode-the-tour-and-the-guessing-game"
    assert github_slug("The vanishing-gradient lesson") == "the-vanishing-gradient-lesson"
    assert github_slug("`rnnviz/plots/`: the **figures**") == "rnnvizplots-the-figures"
    assert github_slug("Models: shipped, trained (and τ)") == "models-shipped-trained-and-τ"


def test_anchors_number_repeated_headings(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text('# A\n\n## Notes\n\n```\n# not a heading\n```\n\n## Notes\n\n<a id="here"></a>\n')
    assert anchors(doc) == {"a", "notes", "notes-1", "here"}


def test_links_are_found_outside_code_only(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text('[a](b.md) and ![img](c.png "t")\n\n```python\nH["x"](y)\n```\nand `f["k"](z)` [d](e.md#f)\n')
    assert _links(doc) == [(False, "b.md"), (True, "c.png"), (False, "e.md#f")]


def test_readme_opens_with_the_two_commands_and_dev_py_knows_them():
    """The first code block is the two commands; dev.py's main dispatches on those verbs (read from its
    source, so nothing is launched) and, without a verb, prints a usage that names them and exits 2."""
    first = FENCE.search(README.read_text(encoding="utf-8")).group(0)
    commands = [line.split("#")[0].split() for line in first.splitlines()[1:-1]]
    assert commands == [["python3", "dev.py", "app"], ["python3", "dev.py", "test"]]

    tree = ast.parse((ROOT / "dev.py").read_text(encoding="utf-8"))
    main = next(f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "main")
    verbs = {node.comparators[0].value for node in ast.walk(main)
             if isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "cmd"
             and isinstance(node.comparators[0], ast.Constant)}
    assert {"app", "test"} <= verbs

    usage = subprocess.run([sys.executable, str(ROOT / "dev.py")], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert usage.returncode == 2
    for verb in verbs:
        assert f"python3 dev.py {verb}" in usage.stdout, verb


def test_every_relative_link_reaches_a_file_and_its_anchor():
    """README.md and docs/*.md: each relative link names a file that exists, and a #anchor one that file has."""
    checked, broken = 0, []
    for doc in [README, *DOCS]:
        for _, target in _links(doc):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (doc.parent / file_part).resolve() if file_part else doc
            where = f"{doc.relative_to(ROOT)} -> {target}"
            checked += 1
            if not dest.exists():
                broken.append(f"{where}: no such file")
            elif anchor and anchor not in anchors(dest):
                broken.append(f"{where}: no such anchor in {dest.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)
    assert checked >= 20  # the README's table alone links a dozen docs: a regex that finds none is broken


def test_every_doc_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for image, t in _links(README) if not image}
    assert not [d.name for d in DOCS if d.resolve() not in linked]


def test_readme_is_a_front_door():
    """Short, with the screenshots near the top; the manual lives in docs/."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 120, len(lines)
    assert any("docs/img/" in line for line in lines[:30])


def test_screenshots_exist_are_small_and_can_be_remade():
    images = [t for image, t in _links(README) if image]
    assert len(images) >= 2
    script = (ROOT / "bench" / "screenshots.py").read_text(encoding="utf-8")
    for target in images:
        path = ROOT / target
        assert path.is_file(), target
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", target
        assert f'"{path.name}"' in script, f"{target} is not made by bench/screenshots.py"
    total = sum(p.stat().st_size for p in (ROOT / "docs" / "img").rglob("*") if p.is_file())
    assert total <= IMG_BUDGET, f"docs/img holds {total / 1024:.0f} KB"


def _cli_verbs() -> set[str]:
    """The subcommands of the real parser."""
    (sub,) = [a for a in cli.parser()._actions if a.__class__.__name__ == "_SubParsersAction"]
    return set(sub.choices)


def test_every_cli_verb_in_the_docs_exists_and_every_verb_is_documented():
    """`python -m rnnviz VERB` (and the installed `rnnviz VERB`) in any code of the docs is a verb the CLI
    knows, and docs/cli.md shows every verb at least once."""
    verbs = _cli_verbs()
    assert {"train", "sample", "trace"} <= verbs
    said = {}
    for doc in [README, *DOCS]:
        text = doc.read_text(encoding="utf-8")
        code = "\n".join(m.group(0) for m in FENCE.finditer(text)) + "\n" + "\n".join(
            m.group(0).strip("`") for m in CODE_SPAN.finditer(FENCE.sub("", text)))
        for verb in re.findall(r"python -m rnnviz (\w[\w-]*)", code) + re.findall(r"(?m)^\s*rnnviz (\w[\w-]*)", code):
            said.setdefault(verb, set()).add(doc.name)
    assert len(said) >= 5  # the docs show many verbs: finding none means the search is broken
    unknown = {v: sorted(d) for v, d in said.items() if v not in verbs}
    assert not unknown, f"verbs the CLI does not know: {unknown}"
    cli_md = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    missing = sorted(v for v in verbs if f"python -m rnnviz {v}" not in cli_md)
    assert not missing, f"docs/cli.md shows no `python -m rnnviz VERB` line for {missing}"


# --- docs/architecture.md: the layout as it is ---------------------------------------------------------

ARCHITECTURE = ROOT / "docs" / "architecture.md"


def _block(title: str) -> list[str]:
    """The lines of an entry of architecture.md's code blocks: the line that starts with `title`, and the
    indented lines under it."""
    for block in FENCE.finditer(ARCHITECTURE.read_text(encoding="utf-8")):
        lines = block.group(0).splitlines()[1:-1]
        for i, line in enumerate(lines):
            if line.startswith(title):
                end = next((j for j in range(i + 1, len(lines)) if lines[j][:1] not in ("", " ")), len(lines))
                return lines[i:end]
    raise AssertionError(f"no entry {title} in docs/architecture.md")


def documented_layers() -> list[list[str]]:
    """rnnviz/'s layers as the doc draws them, top first: each a list of names (`trace`, `plots`,
    `atlas.core`); the lines before the first `# layer` heading are the top layer."""
    layers = [[]]
    package = None
    for line in _block("rnnviz/")[1:]:
        if re.match(r"^  # ", line):
            layers.append([])
        elif m := re.match(r"^  (\S+?)(\.py|/)(\s|$)", line):
            package = m.group(1) if m.group(2) == "/" else None
            layers[-1].append(m.group(1))
        elif (m := re.match(r"^    (\S+?)\.py(\s|$)", line)) and package:
            layers[-1].append(f"{package}.{m.group(1)}")
    return layers


def _modules(folder: Path, prefix: str = "") -> set[str]:
    """Public module names under a folder (private `_x.py` files, `__init__` and `__main__` left out)."""
    return {prefix + p.stem for p in folder.glob("*.py") if not p.name.startswith("_")}


def _rnnviz_imports(path: Path, name: str) -> set[str]:
    """The rnnviz modules a file imports, as top-level names under rnnviz (`atlas`, `plots`, `trace`)."""
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{module}.{a.name}" for a in node.names] + [module]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            parts = t.split(".")
            if parts[0] == "rnnviz" and len(parts) > 1 and ((ROOT / "rnnviz" / f"{parts[1]}.py").exists()
                                                          or (ROOT / "rnnviz" / parts[1]).is_dir()):
                found.add(parts[1])
    return found


def test_architecture_names_every_module_and_only_those():
    named = {n for layer in documented_layers() for n in layer}
    actual = (_modules(ROOT / "rnnviz") | {"__init__"} | {"atlas", "plots", "interop", "features", "paper"}
              | _modules(ROOT / "rnnviz" / "paper", "paper.")
              | _modules(ROOT / "rnnviz" / "atlas", "atlas.") | _modules(ROOT / "rnnviz" / "plots", "plots.")
              | _modules(ROOT / "rnnviz" / "interop", "interop.")
              | _modules(ROOT / "rnnviz" / "features", "features."))
    assert named == actual, f"missing from the doc: {sorted(actual - named)}; gone from rnnviz/: {sorted(named - actual)}"
    ui_named = {m.group(1) for line in _block("ui/")[1:] if (m := re.match(r"^  (\w+)\.py\s", line))}
    assert ui_named == _modules(ROOT / "ui"), sorted(ui_named ^ _modules(ROOT / "ui"))


def test_architecture_layers_point_down():
    """Each rnnviz/ module imports only from its own layer of the doc and the layers below it."""
    layers = documented_layers()
    assert len(layers) >= 5
    rank = {name: i for i, layer in enumerate(layers) for name in layer if "." not in name}
    upward = []
    for path in sorted((ROOT / "rnnviz").rglob("*.py")):
        rel = path.relative_to(ROOT / "rnnviz")
        if rel.name.startswith("_") and rel.name != "__init__.py" or "__pycache__" in rel.parts:
            continue
        top = rel.parts[0].removesuffix(".py")
        if top not in rank:
            continue  # `rnnviz/__init__.py` is "__init__"; only a new, undocumented module is missing, caught above
        name = ".".join(("rnnviz", *rel.with_suffix("").parts))
        for dep in _rnnviz_imports(path, name) - {top}:
            if rank.get(dep, len(layers)) < rank[top]:
                upward.append(f"{rel} imports {dep}, a layer above it")
    assert not upward, "\n".join(upward)


def test_pages_doc_lists_every_page_in_its_sidebar_section():
    """docs/pages.md's table: one row per page of the app, in the section the sidebar shows it under."""
    from ui.state import PAGES, SECTIONS

    title = {url: name for _, name, _, url in PAGES}
    expected = [(section, title[url]) for section, urls in SECTIONS.items() for url in urls]
    text = (ROOT / "docs" / "pages.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([^|]+?) \| ([^|]+?) \| .+\|$", text, re.M)
    assert [r for r in rows if r != ("section", "page") and not set(r[0]) <= set("-")] == expected
    assert sorted(t for _, t in expected) == sorted(title.values())  # no page left out of the sidebar


def test_paths_the_docs_name_exist():
    """A file of the repo named in code (`rnnviz/shannon.py`, `tests/test_x.py::test_y`, `test_lesson.py`)
    exists, and so does a named test function: renaming a file or a test must carry the docs along."""
    named, missing = 0, []
    for doc in [README, *DOCS]:
        prose = FENCE.sub("", doc.read_text(encoding="utf-8"))
        for span in (c.group(0).strip("`").strip() for c in CODE_SPAN.finditer(prose)):
            m = re.fullmatch(r"((?:rnnviz|ui|pages|tests|bench|docs)/[\w./-]*|test_\w+\.py)(?:::(\w+))?", span)
            if not m:
                continue
            path = ROOT / m.group(1) if "/" in m.group(1) else ROOT / "tests" / m.group(1)
            named += 1
            if not path.exists():
                missing.append(f"{doc.name}: {span}")
            elif m.group(2) and not re.search(rf"^def {m.group(2)}\(", path.read_text(encoding="utf-8"), re.M):
                missing.append(f"{doc.name}: {span} (no such test)")
    assert not missing, "\n".join(missing)
    assert named >= 10
