"""The structure holds: the TensorFlow boundary, no import cycle, no private name across modules,
function-level imports only for heavy libraries and each with its reason.

The rules are checked on the import graph read from the source (every import statement,
at module level or inside a function), so a violation fails here before it can slow a command
or drag TensorFlow into the analysis. Each rule is also shown to catch a planted violation.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]

# The Keras side: the only code that may import TensorFlow, Keras, tf2onnx and the architectures.
# The command line dispatches to it (after checking the options).
KERAS_SIDE = ("archkit.keras", "archkit.course", "architectures")
ENTRY = ("archkit.cli", "archkit.__main__")
FORBIDDEN = ("tensorflow", "keras", "tf2onnx", "absl", *KERAS_SIDE)
# Libraries a function may import on its own, where a command that doesn't need them would pay for them.
HEAVY = ("tensorflow", "keras", "tf2onnx", "absl", "onnxruntime", "matplotlib", "PIL", "sklearn",
         "onnxconverter_common", "pandas")


class Import(NamedTuple):
    module: str  # the importing module
    target: str  # the module imported (for `from X import y`: X.y when that is a module, else X)
    names: tuple[str, ...]  # the names taken by `from X import ...`
    local: bool  # inside a function
    line: int
    text: str  # the source line


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(files: dict[str, str]) -> list[Import]:
    """Every import statement of `files` (module name → source)."""
    out = []
    for mod, src in files.items():
        tree = ast.parse(src)
        lines = src.splitlines()
        local: set[int] = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                local.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node in ast.walk(tree):
            text = lines[node.lineno - 1] if hasattr(node, "lineno") else ""
            if isinstance(node, ast.Import):
                for alias in node.names:
                    out.append(Import(mod, alias.name, (), id(node) in local, node.lineno, text))
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = tuple(a.name for a in node.names)
                targets = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in files] or [node.module]
                for t in targets:
                    out.append(Import(mod, t, names, id(node) in local, node.lineno, text))
    return out


def sources(root: Path = ROOT) -> dict[str, str]:
    files = {}
    for package in ("archkit", "architectures"):
        for path in sorted((root / package).rglob("*.py")):
            files[module_name(path, root)] = path.read_text()
    return files


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def boundary_violations(found: list[Import]) -> list[str]:
    """The analysis side (archkit outside keras/, course/ and cli/) importing the Keras side."""
    return [f"{i.module}:{i.line}: imports {i.target}" for i in found
            if i.module.startswith("archkit") and not within(i.module, KERAS_SIDE + ENTRY)
            and within(i.target, FORBIDDEN)]


def keras_libraries_outside(found: list[Import]) -> list[str]:
    """tensorflow, keras and tf2onnx imported anywhere but archkit/keras/ and the architectures."""
    return [f"{i.module}:{i.line}: imports {i.target}" for i in found
            if within(i.target, ("tensorflow", "keras", "tf2onnx")) and not within(i.module, ("archkit.keras", "architectures"))]


def cycles(found: list[Import], files: dict[str, str]) -> list[list[str]]:
    g = nx.DiGraph()
    g.add_nodes_from(files)
    for i in found:
        target = i.target
        while target and target not in files:  # `import archkit.onnx.graph as g` names a module; `from archkit import __version__` the package
            target = target.rpartition(".")[0]
        if target and target != i.module and not (target == "archkit" and i.names == ("__version__",)):
            g.add_edge(i.module, target)
    return [sorted(c) for c in nx.simple_cycles(g)]


def private_imports(found: list[Import]) -> list[str]:
    return [f"{i.module}:{i.line}: from {i.target} import {n}" for i in found if i.target.startswith(("archkit", "architectures"))
            for n in i.names if n.startswith("_") and not n.startswith("__")]


def unexplained_local_imports(found: list[Import]) -> list[str]:
    """Function-level imports of anything but a heavy library, or without a reason comment."""
    bad = []
    for i in found:
        if not i.local:
            continue
        if not within(i.target, HEAVY) and "after the checks" not in i.text:
            bad.append(f"{i.module}:{i.line}: {i.text.strip()} (not a heavy library)")
        elif "#" not in i.text:
            bad.append(f"{i.module}:{i.line}: {i.text.strip()} (no reason given)")
    return bad


def fresh_python(code: str, *, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run `code` in a new interpreter (nothing imported yet) from the project root; it must succeed."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                         check=False)
    assert out.returncode == 0, out.stderr
    return out


FOUND = imports(SOURCES := sources())


def test_the_analysis_side_never_imports_the_keras_side():
    assert boundary_violations(FOUND) == []


def test_only_the_keras_side_imports_tensorflow_keras_and_tf2onnx():
    assert keras_libraries_outside(FOUND) == []


def test_no_import_cycle():
    assert cycles(FOUND, SOURCES) == []


def test_no_private_name_crosses_modules():
    assert private_imports(FOUND) == []


def test_function_level_imports_are_heavy_libraries_with_a_reason():
    assert unexplained_local_imports(FOUND) == []


def test_the_command_modules_import_nothing_heavy_before_their_checks():
    """What a command module imports at its top is what every usage error pays for."""
    code = ("import sys, importlib\n"
            "for m in ('analyse', 'bench', 'connectivity', 'export', 'listing', 'report', 'verify'):\n"
            "    importlib.import_module('archkit.cli.' + m)\n"
            "heavy = ('onnx', 'numpy', 'pandas', 'networkx', 'sympy', 'onnxruntime', 'matplotlib', 'tensorflow')\n"
            "print(sorted(h for h in heavy if h in sys.modules))")
    out = fresh_python(code, timeout=120)
    assert out.stdout.strip() == "[]"


def test_every_module_imports_without_tensorflow():
    """Importing every archkit module, the Keras side's included, loads no TensorFlow: a cached
    export, `archkit analyse` and the onnxruntime child start fast."""
    code = ("import sys, importlib\n"
            f"for m in {sorted(m for m in SOURCES if m != 'archkit.__main__')!r}:\n"
            "    importlib.import_module(m)\n"
            "print([h for h in ('tensorflow', 'keras', 'tf2onnx') if h in sys.modules])")
    out = fresh_python(code, timeout=300)
    assert out.stdout.strip() == "[]"


# --- each rule catches a planted violation -----------------------------------------------------

PLANTED = {
    "archkit.costs.rules": "import tensorflow as tf\n",
    "archkit.render.report": "def f():\n    from archkit.keras.export import import_keras  # heavy\n",
    "archkit.onnx.graph": "from archkit.costs import analyse\n",
    "archkit.analysis": "from archkit.onnx.shapes import _Walk\n",
    "archkit.runtime.bench": "def g():\n    import json\n",
}


@pytest.mark.parametrize("check,module,expected", [
    (boundary_violations, "archkit.costs.rules", "archkit.costs.rules:1: imports tensorflow"),
    (boundary_violations, "archkit.render.report", "archkit.render.report:2: imports archkit.keras.export"),
    (keras_libraries_outside, "archkit.costs.rules", "archkit.costs.rules:1: imports tensorflow"),
    (private_imports, "archkit.analysis", "archkit.analysis:1: from archkit.onnx.shapes import _Walk"),
    (unexplained_local_imports, "archkit.runtime.bench", "archkit.runtime.bench:2: import json (not a heavy library)"),
])
def test_a_planted_violation_is_caught(check, module, expected):
    planted = {**SOURCES, module: PLANTED[module] + SOURCES[module]}
    assert check(imports(planted)) == [expected] + check(FOUND)


def test_a_planted_cycle_is_caught():
    planted = {**SOURCES, "archkit.onnx.graph": PLANTED["archkit.onnx.graph"] + SOURCES["archkit.onnx.graph"]}
    found = cycles(imports(planted), planted)
    assert found and any({"archkit.onnx.graph", "archkit.costs"} <= set(c) for c in found)


# --- the static checks (.ci/run runs them on the tree) fail on a planted violation ------------------

def test_ruff_fails_on_unsorted_imports(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nimport os\n\nprint(os, sys)\n")
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", str(ROOT / "pyproject.toml"), str(bad)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 1 and "I001" in run.stdout, run.stdout + run.stderr


def test_mypy_fails_on_an_untyped_function_of_the_analysis_side(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def cost(node):\n    return 0\n")
    run = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                          "--cache-dir", str(tmp_path / "cache"), str(bad)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 1 and "no-untyped-def" in run.stdout, run.stdout + run.stderr


def test_the_public_face_loads_lazily_and_completely():
    """`import archkit` costs nothing; every name of __all__ resolves to what its module defines."""
    code = ("import sys, archkit\n"
            "print(sorted(h for h in ('onnx', 'numpy', 'pandas', 'networkx') if h in sys.modules))\n"
            "names = [n for n in archkit.__all__ if n != '__version__']\n"
            "assert sorted(archkit.__all__) == sorted(['__version__', *archkit._PUBLIC]), archkit.__all__\n"
            "import importlib\n"
            "assert all(getattr(archkit, n) is getattr(importlib.import_module(archkit._PUBLIC[n]), n) for n in names)\n"
            "print(len(names))")
    out = fresh_python(code, timeout=120)
    assert out.stdout.split("\n")[:2] == ["[]", "21"]
