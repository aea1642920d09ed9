"""The layering contract is checked, and a violation of it is caught; no package has an import cycle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("axaddrspace", "axvcpu", "axdevice", "axvm", "axvisor")


def lint_imports(src_root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(src_root / name) for name in PACKAGES))
    lint = Path(sys.executable).parent / "lint-imports"
    command = [str(lint), "--no-cache", "--config", str(ROOT / "pyproject.toml")]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=src_root)


def copy_sources(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / "packages" / name / "src", tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_tree_keeps_the_contract(tmp_path: Path) -> None:
    result = lint_imports(copy_sources(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_a_lower_package_importing_a_higher_one_is_caught(tmp_path: Path) -> None:
    root = copy_sources(tmp_path)
    module = root / "axaddrspace" / "axaddrspace" / "flags.py"
    module.write_text(module.read_text() + "\nimport axvm  # a layering violation\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "axaddrspace.flags -> axvm" in result.stdout


def test_axvcpu_importing_axdevice_is_caught(tmp_path: Path) -> None:
    root = copy_sources(tmp_path)
    module = root / "axvcpu" / "axvcpu" / "exits.py"
    module.write_text(module.read_text() + "\nimport axdevice  # the two middle packages are independent\n")
    result = lint_imports(root)
    assert result.returncode != 0 and "axvcpu.exits -> axdevice" in result.stdout


# -- no import cycles within a package --------------------------------------------------------
#
# A cycle, even one held together by a function-level import or by an import only a type
# checker reads (``if TYPE_CHECKING``), means neither module can be understood, tested or
# replaced without the other. grimp sees all three kinds of import as edges.

CYCLES = """
import json, sys
import grimp

def cycles(package):
    graph = grimp.build_graph(package, cache_dir=None)
    edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i in graph.modules and i != m)
             for m in sorted(graph.modules)}
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    for root in edges:  # Tarjan's strongly connected components, iteratively
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, at = work.pop()
            if at == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            for position in range(at, len(edges[node])):
                child = edges[node][position]
                if child not in index:
                    work += [(node, position + 1), (child, 0)]
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
    chains = []
    for component in found:  # one closed chain per component, to show where to cut
        first = component[0]
        step = next(m for m in edges[first] if m in component)
        chains.append([first, *graph.find_shortest_chain(importer=step, imported=first)])
    return chains

print(json.dumps({package: cycles(package) for package in sys.argv[1:]}))
"""


def import_cycles(src_root: Path) -> dict[str, list[list[str]]]:
    """Each package's import cycles, as closed chains of module names (none: an empty list)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(src_root / name) for name in PACKAGES))
    result = subprocess.run(
        [sys.executable, "-c", CYCLES, *PACKAGES], capture_output=True, text=True, env=env, cwd=src_root, check=True
    )
    return json.loads(result.stdout)


def test_no_package_has_an_import_cycle(tmp_path: Path) -> None:
    cycles = import_cycles(copy_sources(tmp_path))
    shown = [" -> ".join(chain) for chains in cycles.values() for chain in chains]
    assert not shown, "import cycles:\n" + "\n".join(shown)


def test_an_import_cycle_is_caught_even_through_a_lazy_import(tmp_path: Path) -> None:
    root = copy_sources(tmp_path)
    module = root / "axaddrspace" / "axaddrspace" / "width.py"
    module.write_text(module.read_text() + "\n\ndef _lazy() -> None:\n    from . import memory  # noqa\n")
    cycles = import_cycles(root)
    assert any(chain[0] == chain[-1] and "axaddrspace.width" in chain for chain in cycles["axaddrspace"]), cycles
    assert not cycles["axdevice"]
