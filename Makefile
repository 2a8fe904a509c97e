# prefopt_toy: the front door. Every target sets up .venv when it is missing and installs into it.
#
#   make test         install the locked dev tree, run the whole test suite: pytest over tests/, and
#                     every notebook and lab solution executed top to bottom in smoke mode (nbmake)
#   make demo         print the reference tables, write every figure, then a short GPT-2 bridge run
#                     (small model, figures/bridge_*.{png,pdf}); `python -m prefopt_toy demo --no-bridge` skips it
#   make figures      write the figures only
#   make lab          install the locked lab and lm trees, open JupyterLab on notebooks/ (127.0.0.1)
#   make release      the teacher's side (course.lock): nbgrader makes the student release of the labs
#   make grade        autograde the submissions in course/submitted/ and export the points as CSV
#   make lecture      serve the widgets as standalone Voila apps (127.0.0.1, token)
#   make lint         ruff (lint and format check) and the import-linter layer contracts (also in make test)
#   make bench        time the exact solvers and the dynamics (benchmarks/bench_*.py)
#   make env          just set up .venv with the dev tree
#   make lock         re-resolve requirements/*.lock from pyproject.toml (after changing a dependency)
#   make test-latest  a separate .venv-latest with the newest releases pyproject.toml allows, the
#                     fast tests on it, and a report of what moved against the lock (not in CI)
#   make clean        remove caches and build leftovers (keeps .venv; `make distclean` removes it)
#
# Every install is fully pinned: requirements/{base,lm,lab,course,dev}.lock, written by `make lock`
# (uv pip compile; see requirements/README.md), installed with --no-deps so that nothing outside the
# lock comes in, then `pip check`. constraints.txt pins torch to the local CPU wheel (an unpinned torch
# pulls GBs of CUDA wheels); `make lock` and `make test-latest` resolve under it. Installs are
# idempotent: each tree has a stamp file in .venv that depends on its lock file, so a second run
# installs nothing and starts at once.
#
# Threads: test and lab run torch with THREADS intra-op threads, 1 by default (on a 2-core machine
# torch's second thread stalls whenever the other core is busy, as it is beside JupyterLab or
# another test process: a notebook cell took 27.3 s with torch's default and 9.5 s with one
# thread). demo and figures run alone, headless, where torch's default is the fast setting (the
# small GPT-2 bridge: 201 s with both cores, 450 s with one); `make demo THREADS=1` on a busy
# machine. Override any of them with THREADS=N, or set OMP_NUM_THREADS yourself.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
# The exact trees: installed as locked, nothing resolved at install time.
PIP_SYNC := $(PIP) install --no-deps --no-build-isolation
LOCKS  := requirements
# Must equal the pin in constraints.txt (tests/test_environment.py checks that they agree).
TORCH  := torch==2.13.0
# The lock tool, pinned like everything else (installed into .venv by `make lock` only).
UV     := uv==0.13.9
# The lock is resolved for the project's machines: CPython 3.11 on Linux x86_64. /opt/wheels holds
# the CPU torch wheel there; uv does not read pip's configuration, so it is told.
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
               $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)
LATEST ?= .venv-latest
THREADS ?= 1

# pip never prompts (CI runs with no stdin).
export PIP_NO_INPUT := 1

.PHONY: lint env test demo figures lab bench lock test-latest clean distclean print-notebooks \
        release grade lecture

env: $(VENV)/.stamp-dev

$(PY):
	$(PYTHON) -m venv $(VENV)

# The build tools first (pinned in build.lock; the package is then built without isolation, so no
# unpinned setuptools is fetched), then the locked tree, then the package itself, editable.
# `pip check` fails the install if the lock is not a complete, consistent tree.
define install_lock
	$(PIP_SYNC) -r $(LOCKS)/build.lock
	$(PIP_SYNC) -r $(LOCKS)/$(1).lock
	$(PIP_SYNC) -e .
	$(PIP) check
	@touch $@
endef

$(VENV)/.stamp-base: $(LOCKS)/base.lock $(LOCKS)/build.lock pyproject.toml | $(PY)
	$(call install_lock,base)

$(VENV)/.stamp-dev: $(LOCKS)/dev.lock $(LOCKS)/build.lock pyproject.toml | $(PY)
	$(call install_lock,dev)

$(VENV)/.stamp-lab: $(LOCKS)/lab.lock $(LOCKS)/build.lock pyproject.toml | $(PY)
	$(call install_lock,lab)

$(VENV)/.stamp-lm: $(LOCKS)/lm.lock $(LOCKS)/build.lock pyproject.toml | $(PY)
	$(call install_lock,lm)

$(VENV)/.stamp-course: $(LOCKS)/course.lock $(LOCKS)/build.lock pyproject.toml | $(PY)
	$(call install_lock,course)

# dev.lock is the whole tree (runtime + every extra); the other locks are resolved under it (-c),
# so every package has one version in all of them and moving between targets in one .venv
# changes nothing. base.lock is the light core (no transformers), lm.lock adds the GPT-2 side,
# lab.lock JupyterLab, course.lock nbgrader and Voila. Run after editing a dependency in
# pyproject.toml, commit the result.
UV_COMPILE = $(PY) -m uv pip compile --quiet $(LOCK_TARGET) -c constraints.txt \
             --custom-compile-command "make lock"
lock: | $(PY)
	$(PIP) install --quiet "$(UV)"
	$(UV_COMPILE) pyproject.toml --extra dev --extra lm --extra lab --extra course -o $(LOCKS)/dev.lock
	$(UV_COMPILE) pyproject.toml -c $(LOCKS)/dev.lock -o $(LOCKS)/base.lock
	$(UV_COMPILE) pyproject.toml --extra lm -c $(LOCKS)/dev.lock -o $(LOCKS)/lm.lock
	$(UV_COMPILE) pyproject.toml --extra lab -c $(LOCKS)/dev.lock -o $(LOCKS)/lab.lock
	$(UV_COMPILE) pyproject.toml --extra lab --extra course -c $(LOCKS)/dev.lock -o $(LOCKS)/course.lock
	$(UV_COMPILE) $(LOCKS)/build.in -c $(LOCKS)/dev.lock -o $(LOCKS)/build.lock

# The newest releases pyproject.toml allows (torch stays at the constraints.txt pin), in a venv of
# their own (the build requirements too: tests/test_wheel.py builds without isolation); the fast
# tests (no slow, browser or notebook tests) under filterwarnings=error, so a
# deprecation shows up here before it breaks a fresh clone. Prints what moved against dev.lock.
test-latest: export HF_HUB_OFFLINE = 1
test-latest: export OMP_NUM_THREADS ?= $(THREADS)
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install --disable-pip-version-check --quiet -c constraints.txt "$(TORCH)"
	$(LATEST)/bin/python -m pip install --disable-pip-version-check --quiet -c constraints.txt \
	    --upgrade --upgrade-strategy eager -r $(LOCKS)/build.in -e ".[dev,lm,lab,course]"
	$(LATEST)/bin/python $(LOCKS)/drift.py $(LOCKS)/dev.lock
	$(LATEST)/bin/python -m pytest tests -q -m "not slow and not browser and not notebooks" -p no:cacheprovider

# Tests and the demo never reach for the Hugging Face Hub: the GPT-2 side uses local models only.
test demo figures lab: export HF_HUB_OFFLINE = 1
# Notebooks read PREFOPT_SMOKE=1 as "fast mode": fewer steps, same story (notebooks/README.md).
test: export PREFOPT_SMOKE = 1
# THREADS intra-op threads (1 by default; see the top of this file). `?=` keeps an OMP_NUM_THREADS
# the user exported. JupyterLab's kernels inherit it. The library itself never sets a thread count.
test lab: export OMP_NUM_THREADS ?= $(THREADS)
# demo and figures: torch's default unless THREADS is given (command line or environment).
ifneq ($(filter command line environment,$(origin THREADS)),)
demo figures: export OMP_NUM_THREADS ?= $(THREADS)
endif

# Every notebook nbmake executes: the teaching notebooks, the lectures and the labs' nbgrader source
# notebooks (with their solutions and hidden tests). The student release (notebooks/labs/) is not
# here: it fails by design until filled in, and tests/labs/test_course.py checks that it stops at
# its first check with a short message.
# tests/test_notebooks.py checks that every .ipynb is either in this list or excused with a reason.
NOTEBOOKS = $(sort $(wildcard notebooks/*.ipynb notebooks/gpt2/*.ipynb notebooks/lectures/*.ipynb course/source/*/*.ipynb))

test: $(VENV)/.stamp-dev
	$(PY) -m pytest tests $(NOTEBOOKS) --nbmake --nbmake-timeout=300 --durations=40

demo: $(VENV)/.stamp-lm
	$(PY) -m prefopt_toy demo

figures: $(VENV)/.stamp-base
	$(PY) -m prefopt_toy figures

# The same checks tests/test_layout.py runs inside `make test`, on their own and fast.
lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check prefopt_toy tests benchmarks notebooks course
	$(VENV)/bin/ruff format --check prefopt_toy tests benchmarks notebooks course
	$(VENV)/bin/lint-imports

bench: $(VENV)/.stamp-dev
	$(PY) benchmarks/bench_solvers.py
	$(PY) benchmarks/bench_dynamics.py

# JupyterLab refuses to start as root without --allow-root (containers often run as root).
lab: $(VENV)/.stamp-lab $(VENV)/.stamp-lm
	mkdir -p notebooks
	$(VENV)/bin/jupyter lab notebooks/ --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root,)

# ---- the course: nbgrader (release and grade the labs) and Voila (lectures); course.lock
# The labs are nbgrader source notebooks in course/source/ (course/README.md). `make release`
# runs nbgrader generate_assignment for each, refreshes the student notebooks in notebooks/labs/
# (committed) and writes dist/prefopt_toy-labs.zip, what students download. `make grade`
# autogrades course/submitted/<student>/<lab>/<lab>.ipynb (or SUBMITTED=folder) and writes the
# points per student, lab and exercise to course/grades.csv, through nbgrader's gradebook
# (course/gradebook.db). Kernels run with one thread, offline, 120 s per cell (course/nbgrader_config.py).
release grade: export HF_HUB_OFFLINE = 1
release grade: export OMP_NUM_THREADS ?= $(THREADS)
release: $(VENV)/.stamp-course
	$(PY) -m prefopt_toy.labs release

grade: $(VENV)/.stamp-course
	$(PY) -m prefopt_toy.labs grade $(SUBMITTED)

# Lectures: each notebook of notebooks/lectures/ as a standalone Voila app, the widget and its text
# only (--strip_sources: no code cells on the page; notebooks/README.md). Voila listens on
# 127.0.0.1 and prints the URL with its token (--token: a random one); open a lecture from the tree
# it serves. A busy slide machine: THREADS, as for lab. Voila (a jupyter_server app) needs no flag to
# run as root.
lecture: export HF_HUB_OFFLINE = 1
lecture: export OMP_NUM_THREADS ?= $(THREADS)
lecture: $(VENV)/.stamp-course
	$(VENV)/bin/voila notebooks/lectures/ --Voila.ip=127.0.0.1 --token --strip_sources=True \
	    $(if $(PORT),--port=$(PORT),) $(if $(NO_BROWSER),--no-browser,)

print-notebooks:
	@echo $(NOTEBOOKS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(LATEST)
