"""The install recipes agree: pyproject.toml, environment.yml, constraints.txt and the Makefile.

A dependency added to pyproject.toml but not to environment.yml (or the other way round) fails
here, as does a torch pin that differs between the pip route (constraints.txt, Makefile) and the
conda route (environment.yml).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# pip (PyPI) name -> conda-forge name, where they differ. Every other package has the same name.
PIP_TO_CONDA = {"torch": "pytorch"}
# Entries of environment.yml that are not Python dependencies of the package.
CONDA_ONLY = {"python", "pip"}
# Extras whose dependencies environment.yml must carry (all of them, so the conda env can run
# `make test` and `make lab`).
EXTRAS = ("dev", "lab")

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;#]*)")


def _normalise(name: str) -> str:
    """PEP 503 normalisation, which also suits conda-forge names."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _parse(requirement: str) -> tuple[str, str]:
    """(normalised name, version specifier without spaces) of a pip or conda requirement."""
    match = _REQUIREMENT.match(requirement)
    assert match, f"cannot parse requirement {requirement!r}"
    return _normalise(match.group(1)), match.group(2).replace(" ", "")


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def _pyproject_requirements() -> dict[str, str]:
    """Conda name -> specifier for the runtime dependencies and the extras in EXTRAS."""
    project = _pyproject()["project"]
    lines = list(project["dependencies"])
    for extra in EXTRAS:
        lines += project["optional-dependencies"][extra]
    out = {}
    for line in lines:
        name, spec = _parse(line)
        out[PIP_TO_CONDA.get(name, name)] = spec
    return out


def _environment() -> dict:
    with open(ROOT / "environment.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def _environment_requirements() -> tuple[dict[str, str], list[str]]:
    """(conda name -> specifier for conda and pip entries, the pip section's option lines)."""
    out: dict[str, str] = {}
    pip_options: list[str] = []
    for entry in _environment()["dependencies"]:
        if isinstance(entry, dict):
            assert set(entry) == {"pip"}, f"unexpected section in environment.yml: {entry}"
            for line in entry["pip"]:
                if line.strip().startswith("-"):
                    pip_options.append(line.strip())
                    continue
                name, spec = _parse(line)
                out[PIP_TO_CONDA.get(name, name)] = spec
            continue
        name, spec = _parse(entry)
        if name not in CONDA_ONLY:
            out[name] = spec
    return out, pip_options


def _constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, spec = _parse(line)
            pins[name] = spec
    return pins


def test_environment_yml_has_the_basics():
    env = _environment()
    assert env["name"] == "prefopt_toy"
    assert env["channels"] == ["conda-forge"]
    python = [e for e in env["dependencies"] if isinstance(e, str) and _parse(e)[0] == "python"]
    assert python and python[0].replace(" ", "") == "python>=3.10"
    assert _pyproject()["project"]["requires-python"] == ">=3.10"
    assert isinstance(env["dependencies"][-1], dict), "environment.yml must end with a pip section"
    _, pip_options = _environment_requirements()
    assert any(re.fullmatch(r"-e\s+\.(\[[a-z,]+\])?", o) for o in pip_options), (
        "the pip section of environment.yml must install the package itself: '-e .'"
    )


def test_pyproject_dependencies_are_in_environment_yml():
    wanted = _pyproject_requirements()
    have, _ = _environment_requirements()
    missing = sorted(set(wanted) - set(have))
    assert not missing, (
        f"in pyproject.toml but not in environment.yml: {missing} "
        f"(conda names; map pip -> conda names in PIP_TO_CONDA of {Path(__file__).name})"
    )


def test_environment_yml_dependencies_are_in_pyproject():
    wanted = _pyproject_requirements()
    have, _ = _environment_requirements()
    extra = sorted(set(have) - set(wanted))
    assert not extra, f"in environment.yml but not in pyproject.toml: {extra}"


def test_version_bounds_agree():
    wanted = _pyproject_requirements()
    have, _ = _environment_requirements()
    pins = _constraint_pins()
    for name in sorted(set(wanted) & set(have)):
        if name == "pytorch":
            # The conda route pins torch exactly as constraints.txt pins the pip route.
            assert have[name] == pins["torch"], (
                f"environment.yml pins pytorch{have[name]}, constraints.txt torch{pins['torch']}"
            )
        else:
            assert have[name] == wanted[name], (
                f"{name}: environment.yml says {have[name]!r}, pyproject.toml {wanted[name]!r}"
            )


def test_constraints_pin_torch():
    assert _constraint_pins().get("torch") == "==2.13.0"


def test_makefile_installs_with_constraints():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    # Every spelled-out `pip install` (e.g. the PIP_INSTALL variable) carries the constraints.
    installs = [
        line
        for line in makefile.splitlines()
        if re.search(r"pip\)?\s+install\b", line, re.IGNORECASE)
    ]
    assert installs, "the Makefile has no pip install line"
    for line in installs:
        assert "-c constraints.txt" in line, f"pip install without -c constraints.txt: {line!r}"
    # torch goes in first, on its own, at the pin of constraints.txt.
    torch_pin = re.search(r"^TORCH\s*:?=\s*(\S+)", makefile, flags=re.MULTILINE)
    assert torch_pin, "the Makefile must name the torch pin it installs first (TORCH := ...)"
    assert torch_pin.group(1) == "torch" + _constraint_pins()["torch"]
    first_torch = makefile.index('$(PIP_INSTALL) "$(TORCH)"')
    assert first_torch < makefile.index("$(PIP_INSTALL) -e .")
    assert "-m venv" in makefile


@pytest.mark.parametrize("extra", EXTRAS)
def test_extras_exist(extra):
    assert _pyproject()["project"]["optional-dependencies"][extra]


def test_ci_script_runs_make_test():
    script = ROOT / ".ci" / "run"
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert "make test" in text
    assert script.stat().st_mode & 0o111, ".ci/run must be executable"
