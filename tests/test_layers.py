"""The layer order, enforced from the source: every import in ``jopt/``, function-level too.

The order (docs/architecture.md), lowest first; a package imports only from its own tier or
below, never upwards:

    core → transforms, schedules → optimizers, combinators, fused → data, models
         → train, numerics, bench → distributed → experiment → cli

Rules checked by :func:`check_tree`:

- no import that goes up the order;
- no cycle between packages (packages of one tier may import each other one way only);
- no cycle between the modules of one package;
- no import of another package's private module or name (``jopt.x._y`` from outside ``jopt.x``);
- no import of the ``jopt`` facade (``import jopt``) from inside the tree: a module names the
  package it uses, so its dependencies can be read from its imports.

Scripts in ``experiments/`` and ``benchmarks/`` use public names only (:func:`check_scripts`).
The fixture at the bottom writes a small tree with each kind of violation and checks that the
same functions report every one of them.
"""

from __future__ import annotations

import ast
import os
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("transforms", "schedules"),
    ("optimizers", "combinators", "fused"),
    ("data", "models"),
    ("train", "numerics", "bench"),
    ("distributed",),
    ("experiment",),
    ("cli",),
)


def _private(part: str) -> bool:
    return part.startswith("_") and not part.startswith("__")


def _modules(root: Path, top: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``root/top``."""
    out = {}
    for path in sorted((root / top).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: Path, module: str, known: dict[str, Path]) -> list[tuple[str, str, int]]:
    """``(target module, imported name or "", line)`` for every import in ``path``."""
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                if sub in known:  # `from jopt.x import _y` where _y is a module
                    out.append((sub, "", node.lineno))
                else:
                    out.append((mod, a.name, node.lineno))
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def check_tree(root: Path, top: str = "jopt", layers=LAYERS) -> list[str]:
    """Every layer violation in the package ``root/top``, one line each (empty when clean)."""
    rank = {pkg: i for i, tier in enumerate(layers) for pkg in tier}
    known = _modules(root, top)
    problems: list[str] = []
    pkg_graph: dict[str, set[str]] = {}
    mod_graph: dict[str, set[str]] = {}
    for module, path in known.items():
        parts = module.split(".")
        if len(parts) == 1:
            continue  # the facade itself re-exports everything
        pkg = parts[1]
        if path.parent == root / top:  # a top-level helper module such as jopt/_version.py
            if any(t.split(".")[0] == top for t, _, _ in _imports(path, module, known)):
                problems.append(f"{module}: a top-level helper module imports from {top}")
            continue
        if pkg not in rank:
            problems.append(f"{module}: package {pkg!r} has no place in the layer order")
            continue
        for target, name, line in _imports(path, module, known):
            where = f"{path.relative_to(root)}:{line}"
            tparts = target.split(".")
            if tparts[0] != top:
                continue
            if len(tparts) == 1 and not (name and f"{top}.{name}" in known):
                problems.append(f"{where}: imports the {top} facade; import the owning package")
                continue
            if len(tparts) == 1:  # `from jopt import schedules`
                tparts, target = [top, name], f"{top}.{name}"
                name = ""
            tpkg = tparts[1]
            if tpkg not in rank:
                continue
            if tpkg == pkg:
                if target != module:
                    mod_graph.setdefault(module, set()).add(target)
                continue
            pkg_graph.setdefault(pkg, set()).add(tpkg)
            if rank[tpkg] > rank[pkg]:
                problems.append(f"{where}: {pkg} imports {target}, which is above it ({tpkg})")
            if any(_private(p) for p in tparts[2:]) or (name and _private(name)):
                shown = f"{target}.{name}" if name else target
                problems.append(f"{where}: private import {shown} from outside {top}.{tpkg}")
    problems = list(dict.fromkeys(problems))  # one line per (file, import, reason)
    for comp in _cycles(pkg_graph):
        problems.append(f"package cycle: {' <-> '.join(comp)}")
    for comp in _cycles(mod_graph):
        problems.append(f"module cycle: {' <-> '.join(comp)}")
    return problems


def check_scripts(paths: list[Path], top: str = "jopt") -> list[str]:
    """Private ``jopt`` modules or names imported by standalone scripts."""
    problems = []
    for path in paths:
        for target, name, line in _imports(path, path.stem, {}):
            tparts = target.split(".")
            if tparts[0] != top:
                continue
            if any(_private(p) for p in tparts[1:]) or (name and _private(name)):
                shown = f"{target}.{name}" if name else target
                problems.append(f"{path}:{line}: private import {shown}")
    return problems


def _scripts() -> list[Path]:
    return sorted(p for d in ("experiments", "benchmarks") for p in (ROOT / d).rglob("*.py"))


def test_jopt_follows_the_layer_order():
    problems = check_tree(ROOT)
    assert not problems, "\n".join(problems)


def test_every_package_has_a_layer():
    packages = {p.name for p in (ROOT / "jopt").iterdir() if (p / "__init__.py").exists()}
    assert packages == {pkg for tier in LAYERS for pkg in tier}


def test_scripts_use_public_names_only():
    scripts = _scripts()
    assert len(scripts) >= 5
    problems = check_scripts(scripts)
    assert not problems, "\n".join(problems)


def test_every_public_module_declares_all():
    """A module whose dotted name has no private part lists its public names in ``__all__``."""
    missing = []
    for module, path in _modules(ROOT, "jopt").items():
        if any(_private(p) for p in module.split(".")) or module.endswith("__main__"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {
            t.id
            for node in tree.body
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign))
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        if "__all__" not in names:
            missing.append(module)
    assert not missing, missing


def test_no_library_package_holds_a_command():
    """Argument parsing lives in jopt/cli only."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "jopt").rglob("*.py")
        if "cli" not in p.relative_to(ROOT).parts
        and (p.name.startswith("cmd_") or "argparse" in p.read_text(encoding="utf-8"))
    ]
    assert not offenders, offenders


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_the_checker_catches_each_kind_of_violation(tmp_path):
    """A fake tree with the cycles issue 14 found, each caught by the same check."""
    _write(
        tmp_path,
        {
            "jopt/__init__.py": "from jopt import core, numerics, experiment\n",
            "jopt/core/__init__.py": "",
            "jopt/fused/__init__.py": "from jopt.fused._layout import pack_layout\n",
            "jopt/fused/_layout.py": "def pack_layout(): ...\n",
            # numerics -> experiment, hidden inside a function: up the order, and a cycle
            "jopt/numerics/__init__.py": "from jopt.numerics._compare import f\n",
            "jopt/numerics/_compare.py": """
                def f():
                    from jopt.experiment._build import setup
                    return setup
            """,
            "jopt/bench/__init__.py": "",
            # a private module of another package, and the facade
            "jopt/bench/_memory.py": """
                from jopt.fused._layout import pack_layout
                import jopt
            """,
            "jopt/train/__init__.py": "from jopt import bench\n",
            "jopt/bench/_loop.py": "from jopt.train import x\n",  # same tier, both ways
            "jopt/experiment/__init__.py": "from . import _load\nfrom jopt import numerics\n",
            "jopt/experiment/_build.py": "def setup(): ...\n",
            # _load <-> _validate, one of them function-level and relative
            "jopt/experiment/_load.py": """
                def load():
                    from ._validate import validate
            """,
            "jopt/experiment/_validate.py": "from jopt.experiment._load import load\n",
        },
    )
    problems = check_tree(tmp_path)
    text = "\n".join(problems)
    numerics_up = os.path.join("jopt", "numerics", "_compare.py") + ":3: numerics imports"
    assert numerics_up in text
    assert "private import jopt.experiment._build.setup from outside jopt.experiment" in text
    assert "private import jopt.fused._layout.pack_layout from outside jopt.fused" in text
    assert "imports the jopt facade" in text
    assert "package cycle: experiment <-> numerics" in text
    assert "package cycle: bench <-> train" in text
    assert "module cycle: jopt.experiment._load <-> jopt.experiment._validate" in text
    assert len(problems) == 7, text

    script = tmp_path / "study.py"
    script.write_text("from jopt.experiment._sweep import sweep\nfrom jopt.experiment import run\n")
    (hit,) = check_scripts([script])
    assert "private import jopt.experiment._sweep" in hit


def test_the_checker_accepts_a_clean_tree(tmp_path):
    _write(
        tmp_path,
        {
            "jopt/__init__.py": "from jopt.core import f\n",
            "jopt/core/__init__.py": "from jopt.core._base import f\n",
            "jopt/core/_base.py": "def f(): ...\n",
            "jopt/experiment/__init__.py": "from jopt.experiment._run import run\n",
            "jopt/experiment/_run.py": """
                from jopt.core import f
                def run():
                    from jopt import core
                    return core, f
            """,
        },
    )
    assert check_tree(tmp_path) == []
