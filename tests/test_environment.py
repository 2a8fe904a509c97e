"""The install recipes agree: pyproject.toml, the lock files, environment.yml, constraints.txt and the Makefile.

A dependency added to pyproject.toml but not to environment.yml (or the other way round) fails
here, as does a torch pin that differs between the pip route (constraints.txt, Makefile, the
locks) and the conda route (environment.yml), and a lock that is stale: a pyproject.toml
requirement missing from requirements/*.lock or locked at a version its range excludes (run
`make lock`).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# pip (PyPI) name -> conda-forge name, where they differ. Every other package has the same name.
PIP_TO_CONDA = {"torch": "pytorch", "build": "python-build"}
# Entries of environment.yml that are not Python dependencies of the package.
CONDA_ONLY = {"python", "pip"}
# Extras whose dependencies environment.yml must carry (all of them, so the conda env can run
# `make test` and `make lab`).
EXTRAS = ("lm", "dev", "lab", "course")

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


LOCKS = ROOT / "requirements"
# Which pyproject extras each lock carries (dev.lock is the whole tree).
LOCK_EXTRAS = {
    "base": (),
    "lm": ("lm",),
    "lab": ("lab",),
    "course": ("lab", "course"),
    "dev": ("dev", "lm", "lab", "course"),
}
# The light locks: what a JupyterHub image for the labs installs (README "A light install").
LIGHT_LOCKS = ("base", "lab", "course")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _lock(name: str) -> dict[str, str]:
    """{normalised name: exact version} of requirements/<name>.lock."""
    pins = {}
    for line in (LOCKS / f"{name}.lock").read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match:
            pins[_normalise(match.group(1))] = match.group(2)
    return pins


def _makefile() -> str:
    return (ROOT / "Makefile").read_text(encoding="utf-8")


@pytest.mark.parametrize("lock", sorted(LOCK_EXTRAS))
def test_lock_satisfies_pyproject(lock):
    """Every requirement of pyproject.toml (runtime + the lock's extras) is locked inside its range."""
    project = _pyproject()["project"]
    lines = list(project["dependencies"])
    for extra in LOCK_EXTRAS[lock]:
        lines += project["optional-dependencies"][extra]
    pins = _lock(lock)
    env = {
        "python_version": "3.11",
        "python_full_version": "3.11.7",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "extra": "",
    }
    for line in lines:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = _normalise(req.name)
        assert name in pins, (
            f"{name} is in pyproject.toml but not in requirements/{lock}.lock: run `make lock`"
        )
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"requirements/{lock}.lock pins {name}=={pins[name]}, outside pyproject.toml's {line!r}: run `make lock`"
        )


@pytest.mark.parametrize("lock", ["base", "lm", "lab", "course", "build"])
def test_locks_agree_with_dev_lock(lock):
    """One version per package in every lock, so moving between make targets changes nothing."""
    dev, pins = _lock("dev"), _lock(lock)
    differ = {n: (v, dev[n]) for n, v in pins.items() if n in dev and dev[n] != v}
    assert not differ, f"requirements/{lock}.lock and dev.lock disagree (yours, dev): {differ}"
    if lock != "build":
        assert set(pins) <= set(dev), (
            f"{lock}.lock has packages dev.lock lacks: {set(pins) - set(dev)}"
        )


@pytest.mark.parametrize("lock", sorted(LOCK_EXTRAS))
def test_locks_pin_torch_at_the_constraint(lock):
    torch = Version(_lock(lock)["torch"])
    assert Version(torch.base_version) == Version(_constraint_pins()["torch"].removeprefix("=="))


@pytest.mark.parametrize("lock", LIGHT_LOCKS)
def test_light_locks_hold_nothing_of_the_gpt2_side(lock):
    """base, lab and course install no transformers: neither the lm extra nor what it pulls in."""
    project = _pyproject()["project"]
    heavy = {_normalise(Requirement(line).name) for line in project["optional-dependencies"]["lm"]}
    heavy |= {"tokenizers", "huggingface-hub"}
    assert not heavy & set(_lock(lock)), f"{lock}.lock holds {sorted(heavy & set(_lock(lock)))}"


def test_lm_extra_matches_the_package_check():
    """prefopt_toy._extras.LM_MODULES (what `import prefopt_toy.lm` checks) is the lm extra."""
    from prefopt_toy._extras import LM_MODULES

    project = _pyproject()["project"]
    extra = {_normalise(Requirement(line).name) for line in project["optional-dependencies"]["lm"]}
    assert {_normalise(d) for d in LM_MODULES.values()} == extra


def test_makefile_installs_only_from_locks():
    makefile = _makefile()
    torch_pin = re.search(r"^TORCH\s*:?=\s*(\S+)", makefile, flags=re.MULTILINE)
    assert torch_pin, "the Makefile must name the torch pin (TORCH := ...)"
    assert torch_pin.group(1) == "torch" + _constraint_pins()["torch"]
    assert re.search(r"^PIP_SYNC\s*:=.*--no-deps", makefile, flags=re.MULTILINE), (
        "lock installs must use --no-deps"
    )
    for tree in LOCK_EXTRAS:
        rule = re.search(
            rf"^\$\(VENV\)/\.stamp-{tree}:.*\n\t\$\(call install_lock,{tree}\)",
            makefile,
            re.MULTILINE,
        )
        assert rule, f"the .stamp-{tree} rule must install requirements/{tree}.lock"
        assert f"$(LOCKS)/{tree}.lock" in rule.group(0), (
            f".stamp-{tree} must depend on its lock file"
        )
    body = makefile[makefile.index("define install_lock") : makefile.index("endef")]
    assert "$(PIP) check" in body, "a lock install must end with pip check"
    # Every pip install that resolves (no lock: `make lock`'s tool, `make test-latest`) is held to
    # the torch pin of constraints.txt, except installing the pinned lock tool itself.
    for line in makefile.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if (
            re.search(r"pip\b.*\binstall\b", line)
            and "PIP_SYNC" not in line
            and '"$(UV)"' not in line
        ):
            assert "-c constraints.txt" in line, f"pip install without -c constraints.txt: {line!r}"
    assert "-m venv" in makefile
    assert re.search(r"^lock:", makefile, re.MULTILINE) and re.search(
        r"^test-latest:", makefile, re.MULTILINE
    )


def test_make_targets_default_to_one_thread():
    """make test/lab export OMP_NUM_THREADS (THREADS, default 1, the user's own kept); demo and
    figures only when THREADS is given (they run alone, where torch's default is faster)."""
    makefile = _makefile()
    assert re.search(r"^THREADS\s*\?=\s*1$", makefile, re.MULTILINE)
    targets = set()
    for line in re.findall(
        r"^(.*):\s*export OMP_NUM_THREADS \?= \$\(THREADS\)$", makefile, re.MULTILINE
    ):
        targets |= set(line.split())
    assert targets >= {"test", "lab", "test-latest", "demo", "figures"}
    guard = makefile.index("ifneq ($(filter command line environment,$(origin THREADS)),)")
    demo_line = makefile.index("demo figures: export OMP_NUM_THREADS ?= $(THREADS)")
    assert guard < demo_line < makefile.index("endif", guard)


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
