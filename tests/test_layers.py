"""The layer rule of DESIGN.md: a module imports only from its own layer or below, never upward (not even inside a
function). The walk reads every module's AST, so imports hidden in functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import braincode

#: Layer of each top-level part of the package, bottom (0) to top.
RANK = {"errors": 0, "atomic": 0, "progress": 0, "devices": 0, "persist": 0, "kernels": 1, "atlases": 1,
        "data": 2, "io": 2, "features": 3, "encoding": 4, "interpret": 5, "report": 6, "pipeline": 7,
        "commands": 8, "cli": 8, "__main__": 8}
ROOT = Path(braincode.__file__).parent


def _edges(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("braincode."):
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("braincode.")]
    return out


def upward_imports(root: Path = ROOT) -> list[str]:
    """Every import from a lower layer to a higher one, as ``file:line imports module``."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts == ("__init__",):
            continue
        here = RANK[parts[0]]
        for line, module in _edges(path):
            there = RANK[module.split(".")[1]]
            if there > here:
                bad.append(f"{path.relative_to(root.parent)}:{line} imports {module}")
    return bad


def test_every_part_has_a_layer():
    parts = {p.relative_to(ROOT).with_suffix("").parts[0] for p in ROOT.rglob("*.py")} - {"__init__"}
    assert parts <= set(RANK), f"give these a layer in RANK and DESIGN.md: {sorted(parts - set(RANK))}"


def test_no_import_goes_up_a_layer():
    assert upward_imports() == []


def test_the_walk_finds_an_upward_import_inside_a_function(tmp_path):
    pkg = tmp_path / "braincode" / "data"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from braincode.encoding.metrics import pearson_r\n")
    assert upward_imports(tmp_path / "braincode") == ["braincode/data/x.py:2 imports braincode.encoding.metrics"]
