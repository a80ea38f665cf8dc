"""The package's layers import only downwards, and no module imports itself through others.

errors < runtime < core < io < experiment < cli; the public face (`pcmmeta/__init__.py`) and
`__main__` sit on top. A function-level import counts the same as a module-level one: it is a
dependency all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pcmmeta"
RANK = {"errors": 0, "runtime": 1, "core": 2, "io": 3, "experiment": 4, "cli": 5}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def project_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `path` imports (a `from M import name` that names a submodule counts
    as importing the submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (the package imports absolutely)"
            names = [node.module or ""]
            names += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name in known:
                found.add(name)
    return found


def layer(name: str) -> int | None:
    parts = name.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return None  # the public face: may import any layer
    return RANK[parts[1]]


def test_every_module_has_a_layer():
    for name in modules():
        parts = name.split(".")
        assert len(parts) == 1 or parts[1] in RANK or parts[1] == "__main__", name


def test_imports_go_only_down():
    known = modules()
    upward = []
    for name, path in known.items():
        mine = layer(name)
        if mine is None:
            continue
        for dep in project_imports(path, known):
            theirs = layer(dep)
            if theirs is not None and theirs > mine:
                upward.append(f"{name} imports {dep}")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycle():
    known = modules()
    graph = {name: project_imports(path, known) for name, path in known.items()}
    # a package's __init__ importing its own submodules is not a cycle; a submodule importing
    # its package's __init__ is the edge that can close one, so it stays
    for name in graph:
        graph[name] = {d for d in graph[name] if d != name and not d.startswith(name + ".")}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep) :] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


def test_the_checks_see_a_violation(tmp_path):
    """The checks above are not vacuous: an upward import in a core module is found."""
    known = modules()
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from pcmmeta.experiment.train import train\n")
    assert project_imports(fake, known) == {"pcmmeta.experiment.train"}
    assert layer("pcmmeta.experiment.train") > layer("pcmmeta.core.noise")


def test_the_command_line_module_loads_neither_jax_nor_matplotlib():
    """Commands import the library in their bodies (the one reason for function-level imports
    in `pcmmeta/cli/app.py`): `pcmmeta --help` and a bad flag are answered without them."""
    import subprocess
    import sys

    code = "import sys, pcmmeta.cli.app; print(sorted(m for m in ('jax', 'matplotlib', 'equinox') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
