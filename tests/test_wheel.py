"""The package as users get it works: the wheel, installed into a fresh venv, run from outside the repo.

Every other test imports ``prefopt_toy`` from the source tree (the dev venv holds an *editable*
install), so a module, sub-package or data file that packaging leaves out of the wheel goes
unnoticed there. This test, like optax's ``test.sh``, checks the installed package instead:

1. it copies the repository's files (``git ls-files``: the tracked files plus the untracked ones
   that ``.gitignore`` does not exclude, i.e. what a commit of the working tree would hold; on a
   fresh clone exactly the tracked files) into a temporary folder and builds the wheel there with
   ``python -m build --wheel --no-isolation`` (no isolation: nothing is downloaded; the copy keeps
   ``build/`` and ``*.egg-info`` out of the repository);
2. it creates a fresh venv (``--without-pip``) and installs the wheel into it with the dev venv's pip
   (``pip --python <fresh venv> install --no-deps --no-index``), which also writes the
   ``prefopt-toy`` console script. The runtime dependencies (torch, numpy, transformers, ...) come
   from the dev venv through a ``.pth`` file holding the dev venv's site-packages as a plain path
   line: such a directory is appended to ``sys.path`` but the ``.pth`` files inside it are not
   processed, so the editable install's import hook never activates and ``prefopt_toy`` can only
   come from the wheel (each child process asserts that it does);
3. from a working directory outside the repository, with ``PYTHONPATH`` unset, ``HF_HUB_OFFLINE=1``
   and ``OMP_NUM_THREADS=1``, it imports every module of the installed package (found by walking the
   installed package directory, and compared with the modules of the source tree), runs every
   ``__main__`` module with ``--help``, runs every python block of README.md (the tour first) and
   runs ``python -m prefopt_toy table`` and the ``prefopt-toy`` console script.

It also compares the wheel's file list with the package's files in the source tree, so a missing
file is named directly, and checks that nothing but ``prefopt_toy`` and its metadata is shipped.

The README's GPT-2 block is run too: it trains the *tiny* offline model into a temporary
``PREFOPT_CACHE`` (a few seconds) and then two steps, about 10 s in all on 2 cores, so nothing is
skipped. A README block that trains anything larger would make this test slow: skip it here by its
section (``SLOW_README_SECTIONS``), saying why. The whole module takes about 30 s on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from _readme import python_blocks  # tests/_readme.py

# the repository root, wherever under tests/ this file lives
REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
PACKAGE = "prefopt_toy"
README = REPO / "README.md"
TIMEOUT = 300  # seconds per child process; the slowest (the README blocks) takes ~20 s

# README sections whose python blocks are not run here, each with its reason. Empty: the GPT-2
# block trains only the tiny model for two steps (~10 s), so every block runs.
SLOW_README_SECTIONS: dict[str, str] = {}


@dataclass(frozen=True)
class Installed:
    """The wheel built from the source tree and the fresh venv it is installed in."""

    wheel: Path
    venv: Path
    python: Path
    site_packages: Path
    workdir: Path  # outside the repository: the children's working directory
    env: dict[str, str]
    source_files: tuple[str, ...]  # repository-relative paths copied into the build


def _source_files() -> list[str]:
    """The repository's files as a commit of the working tree would hold them (see the docstring)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the files to package cannot be listed")
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    # A file deleted in the working tree but not yet in the index is listed; the copy follows the tree.
    return sorted(f for f in set(listing.split("\0")) if f and (REPO / f).is_file())


def _run(
    cmd: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None, what: str
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, (
        f"{what} failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
        f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
    )
    return proc


def _child_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")
        and not k.startswith("PIP_")
    }
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONNOUSERSITE="1",  # a user-site prefopt_toy must not stand in for the wheel
        PREFOPT_CACHE=str(tmp / "prefopt_cache"),  # the tiny model is trained here, not in ~/.cache
        MPLBACKEND="Agg",
        MPLCONFIGDIR=str(tmp / "mplconfig"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
    )
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """Build the wheel from a copy of the source tree and install it into a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    assert REPO not in tmp.resolve().parents, "the temporary folder must lie outside the repository"
    env = _child_env(tmp)

    # 1. the wheel, built from a copy of the repository's files
    files = _source_files()
    src = tmp / "src"
    for rel in files:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, "."],
        cwd=src,
        env=env,
        what="building the wheel",
    )
    (wheel,) = dist.glob("*.whl")

    # 2. a fresh venv with the wheel installed; the dependencies from the dev venv, without its
    # editable prefopt_toy (plain path lines in a .pth, see the module docstring)
    venv = tmp / "venv"
    _run(
        [sys.executable, "-m", "venv", "--without-pip", venv],
        cwd=tmp,
        env=env,
        what="creating the fresh venv",
    )
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--no-deps",
            "--no-index",
            wheel,
        ],
        cwd=tmp,
        env=env,
        what="installing the wheel into the fresh venv",
    )
    site_packages = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            cwd=tmp,
            env=env,
            what="locating the fresh venv's site-packages",
        ).stdout.strip()
    )
    dev_dirs = dict.fromkeys(
        [
            *site.getsitepackages(),
            sysconfig.get_paths()["purelib"],
            sysconfig.get_paths()["platlib"],
        ]
    )
    lines = [d for d in dev_dirs if Path(d).is_dir() and Path(d).resolve() != REPO]
    (site_packages / "_prefopt_dev_dependencies.pth").write_text("\n".join(lines) + "\n")

    workdir = tmp / "cwd"
    workdir.mkdir()
    return Installed(wheel, venv, python, site_packages, workdir, env, tuple(files))


def _run_child(installed: Installed, script: str, *args: str, what: str) -> dict:
    """Run ``script`` with the fresh venv's python outside the repo; it writes JSON to argv[1]."""
    path = installed.workdir / f"{what.replace(' ', '_')}.py"
    path.write_text(textwrap.dedent(script))
    out = installed.workdir / f"{what.replace(' ', '_')}.json"
    _run(
        [installed.python, path, out, installed.site_packages, *args],
        cwd=installed.workdir,
        env=installed.env,
        what=what,
    )
    return json.loads(out.read_text())


# The same check in every child: prefopt_toy and each of its loaded modules come from the fresh
# venv's site-packages, and neither the repository nor its editable hook is reachable.
_WHERE_FROM = """
import json, sys
from pathlib import Path

OUT, SITE = Path(sys.argv[1]), Path(sys.argv[2]).resolve()

def where_from():
    try:
        import prefopt_toy
    except BaseException:
        import traceback
        return {"error": traceback.format_exc()}
    outside = {name: getattr(mod, "__file__", None) for name, mod in list(sys.modules.items())
               if name.split(".")[0] == "prefopt_toy"
               and (getattr(mod, "__file__", None) is None
                    or SITE not in Path(mod.__file__).resolve().parents)}
    hooks = [repr(f) for f in sys.meta_path if "editable" in repr(f).lower()]
    return {"file": prefopt_toy.__file__, "outside": outside, "hooks": hooks, "path": sys.path}
"""


def _assert_from_wheel(installed: Installed, where: dict) -> None:
    assert "error" not in where, f"the installed prefopt_toy does not import:\n{where.get('error')}"
    assert installed.site_packages in Path(where["file"]).resolve().parents, (
        f"prefopt_toy was imported from {where['file']}, not from the fresh venv "
        f"{installed.site_packages}: the test would not check the wheel"
    )
    assert not where["outside"], (
        f"prefopt_toy modules loaded from outside the wheel: {where['outside']}"
    )
    assert not where["hooks"], f"the editable install's import hook is active: {where['hooks']}"
    assert str(REPO) not in where["path"], (
        f"the repository is on the child's sys.path: {where['path']}"
    )


def _package_files(files: tuple[str, ...]) -> set[str]:
    return {
        f
        for f in files
        if f.startswith(f"{PACKAGE}/")
        and "__pycache__" not in f
        and not f.endswith((".pyc", ".pyo"))
    }


def test_wheel_holds_every_package_file_and_nothing_else(installed):
    """Every file of ``prefopt_toy/`` in the source tree (modules and data) is in the wheel, and the
    wheel ships only ``prefopt_toy`` and its ``.dist-info`` (no tests, benchmarks or notebooks)."""
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    expected = _package_files(installed.source_files)
    assert any(f.endswith(".py") for f in expected), "no package files found in the source tree"
    missing = sorted(expected - names)
    assert not missing, (
        f"{len(missing)} file(s) of the source tree are not in the wheel {installed.wheel.name} "
        "(a sub-package that [tool.setuptools.packages.find] misses, or data not declared as "
        "package data):\n  " + "\n  ".join(missing)
    )
    tops = {n.split("/")[0] for n in names}
    extra = sorted(t for t in tops if t != PACKAGE and not t.endswith(".dist-info"))
    assert not extra, f"the wheel ships more than the package: {extra}"
    assert len(tops) == 2, f"the wheel holds more than one .dist-info: {sorted(tops)}"


def test_wheel_metadata_keeps_the_gpt2_side_in_the_lm_extra(installed):
    """`pip install prefopt_toy` is the light core; transformers comes only with `[lm]`."""
    import zipfile
    from email.parser import Parser

    from packaging.requirements import Requirement

    with zipfile.ZipFile(installed.wheel) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(name).decode())
    core, by_extra = set(), {}
    for line in metadata.get_all("Requires-Dist"):
        req = Requirement(line)
        extras = [
            e for e in ("lm", "dev", "lab", "course") if req.marker and f'"{e}"' in str(req.marker)
        ]
        (by_extra.setdefault(extras[0], set()) if extras else core).add(req.name.lower())
    assert set(metadata.get_all("Provides-Extra")) >= {"lm", "lab", "course", "dev"}
    assert {"transformers", "accelerate", "safetensors"} <= by_extra["lm"]
    assert not {"transformers", "accelerate", "safetensors", "trl"} & core, core
    assert {"torch", "numpy", "ipywidgets"} <= core


def test_installed_package_imports_every_module(installed):
    """Walking the *installed* ``prefopt_toy`` imports every module of the source tree, from the
    fresh venv; each ``__main__`` module runs with ``--help`` (importing it would run its command)."""
    result = _run_child(
        installed,
        _WHERE_FROM
        + """
import contextlib, importlib, io, pkgutil, runpy, traceback

import prefopt_toy

walked, failures, mains = [], {}, {}


def onerror(name):
    failures[name] = traceback.format_exc()


for info in pkgutil.walk_packages(prefopt_toy.__path__, "prefopt_toy.", onerror=onerror):
    walked.append(info.name)
    if info.name.rsplit(".", 1)[-1] == "__main__":
        package = info.name.rsplit(".", 1)[0]
        saved, sys.argv, buffer = sys.argv, [package, "--help"], io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                runpy.run_module(package, run_name="__main__", alter_sys=True)
            code = "returned without exiting"
        except SystemExit as exit_:
            code = exit_.code
        except Exception:
            code = traceback.format_exc()
        finally:
            sys.argv = saved
        mains[info.name] = {"code": code, "help": buffer.getvalue()[:200]}
        continue
    try:
        importlib.import_module(info.name)
    except Exception:
        failures[info.name] = traceback.format_exc()

OUT.write_text(json.dumps({"walked": walked, "failures": failures, "mains": mains,
                           "where": where_from()}))
""",
        what="import every module",
    )
    _assert_from_wheel(installed, result["where"])
    assert not result["failures"], "modules of the installed package fail to import:\n" + "\n".join(
        f"--- {name}\n{tb}" for name, tb in result["failures"].items()
    )
    expected = {
        PACKAGE + "." + f[len(PACKAGE) + 1 : -3].replace("/", ".").removesuffix(".__init__")
        for f in _package_files(installed.source_files)
        if f.endswith(".py")
    } - {PACKAGE + ".__init__"}
    expected.discard(PACKAGE)  # the walk starts below the top-level package
    missing = sorted(expected - set(result["walked"]))
    assert not missing, f"modules of the source tree absent from the installed package: {missing}"
    assert f"{PACKAGE}.__main__" in result["mains"]
    for name, main in result["mains"].items():
        assert main["code"] in (0, None) and main["help"].startswith("usage:"), (
            f"python -m {name.removesuffix('.__main__')} --help did not print its usage: {main}"
        )


def test_readme_blocks_run_with_the_installed_package(installed):
    """The README's tour (and every other python block, each in a fresh namespace) runs against the
    installed package, from outside the repository; a failure names the README section and line."""
    blocks = python_blocks(README)
    assert any(section == "A short tour" for section, _, _ in blocks), (
        "README.md has no python block in its 'A short tour' section"
    )
    assert blocks[0][0] == "A short tour", "the tour is no longer the README's first python block"
    to_run = [b for b in blocks if b[0] not in SLOW_README_SECTIONS]
    (installed.workdir / "readme_blocks.json").write_text(json.dumps(to_run))
    result = _run_child(
        installed,
        _WHERE_FROM
        + """
import traceback

blocks = json.loads((OUT.parent / "readme_blocks.json").read_text())
ran, failures = [], {}
for section, line, code in blocks:
    # padded so that a traceback's line numbers are README.md's own
    source = "\\n" * (line - 1) + code
    try:
        exec(compile(source, "README.md", "exec"), {"__name__": "__main__"})  # our own README
        ran.append(f"{section} (README.md:{line})")
    except BaseException:
        failures[f"{section} (README.md:{line})"] = traceback.format_exc()
OUT.write_text(json.dumps({"ran": ran, "failures": failures, "where": where_from()}))
""",
        what="README blocks",
    )
    assert not result["failures"], (
        "README python blocks fail with the installed package:\n"
        + "\n".join(f"--- {name}\n{tb}" for name, tb in result["failures"].items())
    )
    assert len(result["ran"]) == len(to_run)
    _assert_from_wheel(installed, result["where"])


_TABLE_HEADER = re.compile(r"^solution\s+tau\s+pi\(.*exploitability$", flags=re.M)


def _assert_table(stdout: str, command: str) -> None:
    games = re.findall(r"^== (\w+): ", stdout, flags=re.M)
    assert games, f"{command} printed no game heading:\n{stdout[:2000]}"
    assert len(_TABLE_HEADER.findall(stdout)) == len(games), (
        f"{command}: not one table per game ({games}):\n{stdout[:2000]}"
    )
    assert stdout.count("Nash equilibrium") >= len(games), stdout[:2000]


def test_command_line_prints_the_tables(installed):
    """``python -m prefopt_toy table`` and the installed ``prefopt-toy`` script print the reference
    tables with the installed package, from outside the repository."""
    # the same interpreter and environment as the other children, which assert that prefopt_toy
    # comes from the fresh venv; the working directory (sys.path[0] under -m) holds no package
    proc = _run(
        [installed.python, "-m", PACKAGE, "table"],
        cwd=installed.workdir,
        env=installed.env,
        what="python -m prefopt_toy table",
    )
    _assert_table(proc.stdout, "python -m prefopt_toy table")

    script = installed.venv / "bin" / "prefopt-toy"
    assert script.is_file() and os.access(script, os.X_OK), (
        f"pip did not install the console script {script} ([project.scripts] in pyproject.toml)"
    )
    proc = _run(
        [script, "table", "--game", "transitive"],
        cwd=installed.workdir,
        env=installed.env,
        what="the prefopt-toy console script",
    )
    _assert_table(proc.stdout, "prefopt-toy table --game transitive")
