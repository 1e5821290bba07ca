"""The package layout is the architecture: these tests keep it so.

- `models/videollava/` is the remote-code unit: Transformers copies its files flat next to a checkpoint, so they may
  import each other (relative, one dot) and installed libraries, never the rest of this package.
- Imports between the package's top-level parts run one way: no cycles, lazy (function-level) imports included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import videollava_hf

PACKAGE = Path(videollava_hf.__file__).resolve().parent
UNIT = PACKAGE / "models" / "videollava"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["videollava_hf", *parts])


def _imports(path: Path) -> list[tuple[int, str]]:
    """(level, absolute module) of every import in the file, at any depth (lazy imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.level, target))
        elif isinstance(node, ast.Import):
            found.extend((0, alias.name) for alias in node.names)
    return found


def test_remote_code_unit_imports_only_its_siblings():
    offenders = []
    for path in sorted(UNIT.glob("*.py")):
        for level, target in _imports(path):
            internal = target == "videollava_hf" or target.startswith("videollava_hf.")
            if internal and (level != 1 or target.rsplit(".", 1)[0] != "videollava_hf.models.videollava"):
                offenders.append(f"{path.name}: {'.' * level}{target}")
    assert not offenders, "the remote-code unit must import only its siblings: " + "; ".join(offenders)
    assert not [p for p in UNIT.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))], "the unit must stay flat"


def _part(module: str) -> str:
    """The top-level part a module belongs to: videollava_hf.conversion.common -> conversion."""
    parts = module.split(".")
    if len(parts) < 2:
        return "videollava_hf"
    return "models" if parts[1] == "models" else parts[1]


def test_top_level_parts_import_each_other_without_cycles():
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _part(_module_name(path))
        if source == "videollava_hf":  # the package's own __init__ / registration may import any part
            continue
        for _, target in _imports(path):
            if target.startswith("videollava_hf."):
                dest = _part(target)
                if dest not in (source, "videollava_hf"):
                    graph.setdefault(source, set()).add(dest)
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in stack:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif len(stack) < 12:
                visit(nxt, stack + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert not cycles, "import cycles between parts of the package: " + "; ".join(sorted(set(cycles)))
    assert "models" not in graph, "models/ must not import the tools around it"


def test_conversion_modules_have_no_cycle():
    conversion = PACKAGE / "conversion"
    edges = {}
    for path in conversion.glob("*.py"):
        name = _module_name(path)
        edges[name] = {t for _, t in _imports(path) if t.startswith("videollava_hf.conversion") and t != name}
    for name, targets in edges.items():
        for target in targets:
            assert name not in edges.get(target, set()), f"cycle: {name} <-> {target}"
