"""The layout as a contract: layers (import-linter), no import cycles, ruff, tests mirroring folders.

``make test`` runs these, so a change that breaks the design fails the test run with the modules
named:

- ``lint-imports`` checks the contracts of ``[tool.importlinter]`` in ``pyproject.toml`` (the
  layers of the core and of ``lm``, the exact core never importing ``lm``, widgets, plots or labs,
  the GPT-2 side reaching the core only through losses, games and solutions, the dynamics reached
  through ``prefopt_toy.dynamics`` only, no cycles between sibling packages);
- a module-level cycle check on grimp's import graph (the graph import-linter itself builds; every
  import counts, also one inside a function, except those under ``if TYPE_CHECKING:``);
- ``ruff check`` and ``ruff format --check`` with the rules written in ``pyproject.toml``;
- no flat family: no folder holds several modules spelled ``<prefix>_*`` that should be a folder;
- ``tests/`` mirrors the package folders;
- ``benchmarks/README.md`` names every benchmark script and report.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "prefopt_toy"
BIN = Path(sys.executable).parent
LINTED = ["prefopt_toy", "tests", "benchmarks", "notebooks", "course"]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def test_import_contracts_hold():
    result = _run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, (
        "import-linter: a layer contract is broken\n" + result.stdout[-6000:]
    )
    assert re.search(r"Contracts: \d+ kept, 0 broken", result.stdout), result.stdout[-2000:]


def test_every_contract_module_exists():
    """A contract naming a module that was renamed would silently check nothing."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    graph = grimp.build_graph("prefopt_toy")
    modules = graph.modules
    names: set[str] = set()
    for contract in config["contracts"]:
        for key in (
            "source_modules",
            "forbidden_modules",
            "protected_modules",
            "allowed_importers",
        ):
            names.update(contract.get(key, []))
        for container in contract.get("containers", []):
            for layer in contract.get("layers", []):
                for part in re.split(r"[|:]", layer):
                    names.add(f"{container}.{part.strip()}")
    missing = sorted(n for n in names if n not in modules)
    assert not missing, (
        f"pyproject.toml's import contracts name modules that do not exist: {missing}"
    )


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_no_import_cycles():
    graph = grimp.build_graph("prefopt_toy", exclude_type_checking_imports=True)
    cycles = _cycles(graph)
    lines = []
    for component in cycles:
        chain = graph.find_shortest_chain(importer=component[0], imported=component[1])
        back = graph.find_shortest_chain(importer=component[1], imported=component[0])
        lines.append(f"{component}: {' -> '.join(chain or ())} and back {' -> '.join(back or ())}")
    assert not cycles, "import cycles:\n" + "\n".join(lines)


def test_cycle_finder_finds_a_cycle():
    """The check above can fail: a two-module cycle added to a copy of the graph is reported."""
    graph = grimp.build_graph("prefopt_toy", exclude_type_checking_imports=True)
    graph.add_import(importer="prefopt_toy.games.named", imported="prefopt_toy.solutions.bt")
    graph.add_import(importer="prefopt_toy.solutions.bt", imported="prefopt_toy.games.named")
    assert any(
        {"prefopt_toy.games.named", "prefopt_toy.solutions.bt"} <= set(c) for c in _cycles(graph)
    )


@pytest.mark.parametrize("command", ["check", "format"])
def test_ruff(command):
    args = [str(BIN / "ruff"), command, *LINTED]
    if command == "format":
        args.insert(2, "--check")
    result = _run(*args)
    assert result.returncode == 0, (
        f"ruff {command} fails (`make lint` shows it):\n" + (result.stdout + result.stderr)[-6000:]
    )


def _folders() -> list[Path]:
    return sorted(p.parent for p in PACKAGE.rglob("__init__.py") if "__pycache__" not in p.parts)


def test_no_flat_families():
    """Three or more modules of one folder sharing a name prefix are a concept that wants a folder."""
    offenders = []
    for folder in _folders():
        stems = [p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")]
        prefixes = Counter(s.split("_")[0] for s in stems if "_" in s)
        offenders += [
            f"{folder.relative_to(ROOT)}/{prefix}_*" for prefix, n in prefixes.items() if n >= 3
        ]
    assert not offenders, f"flat families (make each a folder): {offenders}"


def test_tests_mirror_the_package():
    """Each package folder has its tests in the same place under tests/, and tests/ has no other folder."""
    package_folders = {f.relative_to(PACKAGE) for f in _folders() if f != PACKAGE}
    test_folders = {
        p.relative_to(ROOT / "tests")
        for p in (ROOT / "tests").rglob("*")
        if p.is_dir() and "__pycache__" not in p.parts and any(p.glob("test_*.py"))
    }
    assert test_folders <= package_folders, (
        f"tests/ folders with no package folder: {sorted(map(str, test_folders - package_folders))}"
    )
    untested = sorted(str(f) for f in package_folders - test_folders)
    assert not untested, f"package folders with no tests/ folder: {untested}"


def test_benchmarks_readme_lists_every_script_and_report():
    """Every benchmark script and every report in ``benchmarks/`` is named in its README's table,
    so a result written down is also found (the README's index, not the top-level README, is
    where a reader looks for a measurement)."""
    bench = ROOT / "benchmarks"
    index = (bench / "README.md").read_text(encoding="utf-8")
    table = [ln for ln in index.splitlines() if ln.startswith("|")]
    files = sorted(bench.glob("*.py")) + sorted(bench.glob("*.md")) + sorted(bench.glob("*.png"))
    unlisted = [
        f.name
        for f in files
        if f.name != "README.md" and not any(f"`{f.name}`" in row for row in table)
    ]
    assert not unlisted, f"benchmarks/README.md's table does not name {unlisted}"
