"""The import graph of rnnviz/ and ui/, read with ast: no circles, and the library never imports streamlit.

Every import counts, at module level or inside a function (a lazy import still ties the two modules
together; it only hides the circle until run time). `from . import x` is an edge to the submodule x.
A package's own __init__ is not counted as imported by `from pkg.mod import y`: Python has already
started it by then, so that is no circle a reader must untangle.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rnnviz", "ui")


def module_files(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the packages."""
    found = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict) -> str | None:
    """The longest known module that `name` (a dotted path) is, or lies in."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


def imports_of(module: str, path: Path, modules: dict) -> set[str]:
    """The known modules that `module` imports anywhere in its file (absolute and relative)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            # `from pkg import x` imports the submodule pkg.x when there is one, else a name of pkg
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
        else:
            continue
        out.update(t for t in (_resolve(n, modules) for n in targets) if t and t != module)
    return out


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """module -> the known modules it imports."""
    modules = module_files(root, packages)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None when the graph has none (iterative DFS)."""
    state = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def _top_level_imports(path: Path) -> set[str]:
    """The first dotted part of every absolute import in a file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# --- the cycle finder on tiny fake packages, so the real test is known to be able to fail ---

def test_finder_names_a_circle_made_by_a_function_level_relative_import(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from .b import f\n",
                      "pkg/b.py": "def f():\n    from . import c\n", "pkg/c.py": "import pkg.a\n"})
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.b"] == {"pkg.c"}  # `from . import c` is the submodule, not the package
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_finder_follows_parent_relative_imports_and_names_from_a_package(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "from .sub.y import Y\n", "pkg/x.py": "from . import CONST\n",
                      "pkg/sub/__init__.py": "", "pkg/sub/y.py": "from ..x import X\n"})
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.sub.y"] == {"pkg.x"} and graph["pkg.x"] == {"pkg"}  # CONST is a name in pkg/__init__
    assert find_cycle(graph) == ["pkg", "pkg.sub.y", "pkg.x", "pkg"]


def test_finder_finds_no_circle_where_there_is_none(tmp_path):
    _write(tmp_path, {"pkg/__init__.py": "from . import a\n", "pkg/a.py": "from .b import f\nimport os\n",
                      "pkg/b.py": "from pkg.c import g\n", "pkg/c.py": "import json\n"})
    graph = import_graph(tmp_path, ("pkg",))
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": set()}
    assert find_cycle(graph) is None


def test_finder_sees_a_circle_between_two_packages(tmp_path):
    _write(tmp_path, {"lib/__init__.py": "", "lib/m.py": "def f():\n    import app.w\n",
                      "app/__init__.py": "", "app/w.py": "from lib import m\n"})
    assert find_cycle(import_graph(tmp_path, ("lib", "app"))) == ["app.w", "lib.m", "app.w"]


# --- the real code ---

def test_no_import_circle_in_rnnviz_or_ui():
    graph = import_graph(ROOT)
    assert {"rnnviz.corpora", "rnnviz.recipes", "rnnviz.atlas.core", "ui.sidebar"} <= graph.keys()
    assert "rnnviz.training" in graph["rnnviz.recipes"]  # the walk does see real imports
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_library_never_imports_streamlit_or_ui():
    offenders = {str(p.relative_to(ROOT)): sorted(_top_level_imports(p) & {"streamlit", "ui"})
                 for p in module_files(ROOT, ("rnnviz",)).values()}
    assert not {k: v for k, v in offenders.items() if v}
