# prefopt_toy: the front door. Every target sets up .venv when it is missing and installs into it.
#
#   make test     install the dev extra, run the whole test suite: pytest over tests/, and every
#                 notebook and lab solution executed top to bottom in smoke mode (nbmake)
#   make demo     print the reference tables, write every figure, then a short GPT-2 bridge run
#                 (tiny model, figures/bridge.{png,pdf}); `python -m prefopt_toy demo --no-bridge` skips it
#   make figures  write the figures only
#   make lab      install the lab extra, open JupyterLab on notebooks/ (127.0.0.1)
#   make bench    time the exact solvers and the dynamics (benchmarks/bench_*.py)
#   make env      just set up .venv with the dev extra
#   make clean    remove caches and build leftovers (keeps .venv; `make distclean` removes it)
#
# Installs are idempotent: each extra has a stamp file in .venv that depends on pyproject.toml and
# constraints.txt, so a second run installs nothing and starts at once. Every pip call is
# constrained by constraints.txt, which pins torch (an unpinned torch pulls GBs of CUDA wheels);
# torch is installed first, on its own, so the pin is settled before anything depends on it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIP_INSTALL := $(PIP) install --disable-pip-version-check -c constraints.txt
# Must equal the pin in constraints.txt (tests/test_environment.py checks that they agree).
TORCH  := torch==2.13.0
DEPS   := pyproject.toml constraints.txt

# pip never prompts (CI runs with no stdin).
export PIP_NO_INPUT := 1

.PHONY: env test demo figures lab bench clean distclean print-notebooks

env: $(VENV)/.stamp-dev

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch alone first, then the package (editable) with its runtime dependencies.
$(VENV)/.stamp-base: $(DEPS) | $(PY)
	$(PIP_INSTALL) "$(TORCH)"
	$(PIP_INSTALL) -e .
	@touch $@

$(VENV)/.stamp-dev: $(VENV)/.stamp-base $(DEPS)
	$(PIP_INSTALL) -e ".[dev]"
	@touch $@

$(VENV)/.stamp-lab: $(VENV)/.stamp-base $(DEPS)
	$(PIP_INSTALL) -e ".[lab]"
	@touch $@

# Tests and the demo never reach for the Hugging Face Hub: the GPT-2 side uses local models only.
test demo: export HF_HUB_OFFLINE = 1
# Notebooks read PREFOPT_SMOKE=1 as "fast mode": fewer steps, same story (STYLE.md section 7).
test: export PREFOPT_SMOKE = 1
# One intra-op thread for the test run: on a 2-core machine torch's second thread stalls whenever
# the other core is busy (a notebook kernel, JupyterLab), 8x slower on tiny GPT-2 steps. The library
# itself never sets a thread count; this is the test environment only.
test: export OMP_NUM_THREADS = 1

# Every notebook nbmake executes. The student versions of the labs are not here: they fail by
# design until filled in, and tests/test_labs.py checks that they fail with a readable message.
# tests/test_notebooks.py checks that every .ipynb is either in this list or excused with a reason.
NOTEBOOKS = $(sort $(wildcard notebooks/*.ipynb notebooks/gpt2/*.ipynb notebooks/labs/solutions/*.ipynb))

test: $(VENV)/.stamp-dev
	$(PY) -m pytest tests $(NOTEBOOKS) --nbmake --nbmake-timeout=300

demo: $(VENV)/.stamp-base
	$(PY) -m prefopt_toy demo

figures: $(VENV)/.stamp-base
	$(PY) -m prefopt_toy figures

bench: $(VENV)/.stamp-dev
	$(PY) benchmarks/bench_solvers.py
	$(PY) benchmarks/bench_dynamics.py

# JupyterLab refuses to start as root without --allow-root (containers often run as root).
lab: $(VENV)/.stamp-lab
	mkdir -p notebooks
	$(VENV)/bin/jupyter lab notebooks/ --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root,)

print-notebooks:
	@echo $(NOTEBOOKS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
