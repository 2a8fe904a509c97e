"""End to end in a real browser: JupyterLab serves the notebooks, headless Chromium runs them.

A JupyterLab server on 127.0.0.1 with a token serves a *copy* of ``notebooks/`` (JupyterLab
autosaves, and the committed notebooks must stay without outputs). Playwright drives Debian's
Chromium (``executable_path``; ``playwright install`` is never used): it opens the Nash-learning
notebook, waits for an idle kernel, runs all cells, moves the tau slider and asserts that the
figure changed; it also runs a few other notebooks and checks that no cell raised. Screenshots go
to ``$PREFOPT_SCREENSHOTS`` when it is set (``tmp_path`` otherwise), for people to look at.

Voila serves the lecture notebooks (``notebooks/lectures/``) as ``make lecture`` does: a test opens
one, checks that the page shows the widget and its text but no code, input cell or traceback, and
moves its slider with the keyboard; another measures, for each widget at K = 3, the time from a
key press to the new figure image loaded in the page (median of several presses, written to
``widget_latency.json`` beside the screenshots; ``benchmarks/widget_latency.md``), under a
generous bound.

Without Chromium the tests skip and say how to enable them; under CI (``CI`` set) they fail
instead, because ``.ci/run`` installs Chromium.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KERNEL_TIMEOUT_MS = 120_000
RUN_TIMEOUT_MS = 300_000


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = (
        "Chromium not found: the browser test needs Debian's Chromium "
        "(`apt-get update && apt-get install -y chromium`); .ci/run installs it"
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("PREFOPT_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, one per module: Playwright's sync API allows one running instance."""
    chromium = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def lab(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A JupyterLab server on a copy of notebooks/, and a headless Chromium page on it."""
    work = tmp_path_factory.mktemp("lab")
    served = work / "notebooks"
    shutil.copytree(ROOT / "notebooks", served, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    token, port = secrets.token_hex(16), _free_port()
    # No "get notified about Jupyter news?" toast over the page (it would hide part of a screenshot).
    labconfig = work / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    env = dict(
        os.environ,
        PREFOPT_SMOKE="1",
        HF_HUB_OFFLINE="1",
        JUPYTER_CONFIG_DIR=str(work / "config"),
        JUPYTER_RUNTIME_DIR=str(work / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(work / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
    )
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={served}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")  # JupyterLab refuses to run as root without it
    log = open(work / "jupyter.log", "w")
    server = subprocess.Popen(command, cwd=served, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", server, work / "jupyter.log")
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield {
            "page": page,
            "base": base,
            "token": token,
            "shots": _screenshot_dir(tmp_path_factory),
            "log": work / "jupyter.log",
        }
        page.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_for_server(url: str, server: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


# JavaScript run in the page; window.jupyterapp exists because of --LabApp.expose_app_in_browser.
_KERNEL_IDLE = """(path) => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!kernel && w.context.path === path && kernel.status === 'idle' && w.content.widgets.length > 0;
}"""
_RUN_STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const code = w.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  code.forEach((c, i) => c.model.outputs.toJSON().forEach(o => {
    if (o.output_type === 'error') errors.push(`code cell ${i}: ${o.ename}: ${o.evalue}`);
  }));
  const done = code.every(c => c.model.executionCount !== null);
  const idle = w.sessionContext.session.kernel.status === 'idle';
  return {errors, done: done && idle, executed: code.filter(c => c.model.executionCount !== null).length,
          total: code.length};
}"""


def _open_and_run_all(lab: dict, name: str) -> dict:
    """Open notebooks/<name>.ipynb, wait for an idle kernel, Run All, wait until every cell ran."""
    page = lab["page"]
    # ?reset: a fresh workspace, so the notebook opened before does not come back as the current tab.
    page.goto(f"{lab['base']}/lab/tree/{name}.ipynb?reset&token={lab['token']}")
    page.wait_for_function(_KERNEL_IDLE, arg=f"{name}.ipynb", timeout=KERNEL_TIMEOUT_MS)
    # An idle kernel first: Run All on a kernel still starting may run only the first cell.
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = time.monotonic() + RUN_TIMEOUT_MS / 1000
    state: dict = {}
    while time.monotonic() < deadline:
        state = page.evaluate(_RUN_STATE)
        if state["errors"]:
            page.screenshot(path=str(lab["shots"] / f"{name}_error.png"), full_page=True)
            pytest.fail(f"{name}: a cell raised in JupyterLab: {state['errors']}")
        if state["done"]:
            return state
        time.sleep(0.5)
    page.screenshot(path=str(lab["shots"] / f"{name}_timeout.png"), full_page=True)
    pytest.fail(f"{name}: Run All did not finish in {RUN_TIMEOUT_MS / 1000:.0f} s ({state})")


def test_nash_learning_slider_changes_the_figure(lab):
    page = lab["page"]
    state = _open_and_run_all(lab, "04_nash_learning")
    assert state["executed"] == state["total"] > 0
    figure = page.locator("img.prefopt-figure").first
    figure.wait_for(state="visible", timeout=60_000)
    figure.scroll_into_view_if_needed()
    before_src, before_png = figure.get_attribute("src"), figure.screenshot()
    page.screenshot(path=str(lab["shots"] / "04_nash_learning_before.png"), full_page=False)

    # Move the tau slider with the keyboard, as a user would: focus its handle, press the arrows.
    handle = page.locator(".prefopt-tau .noUi-handle").first
    handle.scroll_into_view_if_needed()
    readout = page.locator(".prefopt-tau .widget-readout").first
    before_value = readout.inner_text()
    handle.focus()
    for _ in range(3):
        handle.press("ArrowRight")
    page.wait_for_function(
        "([sel, old]) => { const img = document.querySelector(sel);"
        " return img && img.getAttribute('src') !== old; }",
        arg=["img.prefopt-figure", before_src],
        timeout=60_000,
    )
    assert readout.inner_text() != before_value, "the tau readout did not move"
    # The three presses are three redraws: the screenshot waits for the last (an idle kernel).
    page.wait_for_function(_KERNEL_IDLE, arg="04_nash_learning.ipynb", timeout=60_000)
    after_png = figure.screenshot()
    assert after_png != before_png, "the figure's pixels did not change after moving tau"
    page.screenshot(path=str(lab["shots"] / "04_nash_learning_after.png"), full_page=False)


def _page_through(lab: dict, name: str, pages: int = 12) -> int:
    """Screenshot the notebook a screen at a time from the top (name_01.png, ...); returns how many."""
    page = lab["page"]
    scroller = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer"
    page.evaluate(f"document.querySelector('{scroller}').scrollTo(0, 0)")
    taken = 0
    for i in range(pages):
        page.wait_for_timeout(300)  # let the windowed notebook render the cells now in view
        page.screenshot(path=str(lab["shots"] / f"{name}_{i + 1:02d}.png"))
        taken += 1
        moved = page.evaluate(f"""() => {{ const el = document.querySelector('{scroller}');
            const before = el.scrollTop; el.scrollBy(0, el.clientHeight - 80); return el.scrollTop > before; }}""")
        if not moved:
            break
    return taken


@pytest.mark.parametrize(
    "name", ["00_tour", "01_preference_games", "02_rlhf_to_dpo", "06_symbolic_derivations"]
)
def test_notebook_runs_in_jupyterlab(lab, name):
    state = _open_and_run_all(lab, name)
    assert state["executed"] == state["total"] > 0
    assert _page_through(lab, name) >= 2, "the notebook should be longer than one screen"


# ------------------------------------------------------------------------------ Voila lectures

LECTURES = ROOT / "notebooks" / "lectures"
# Event to new image, in the browser (ms): a generous bound, CI machines vary; the measured medians
# go to benchmarks/widget_latency.md (the target on a quiet 2-core machine is 200 ms).
LATENCY_BOUND_MS = 1000.0
LATENCY_MOVES = 7

# A key press on a control starts the clock; the next `load` of a new figure image stops it. Load
# (not the src change) is when the browser has the new picture decoded and ready to paint.
_LATENCY_PROBE = """() => {
  const probe = {start: null, samples: [], loads: 0};
  window.__prefopt = probe;
  document.addEventListener('keydown', () => { probe.start = performance.now(); }, true);
  document.addEventListener('load', (e) => {
    const img = e.target;
    if (!(img instanceof HTMLImageElement) || !img.classList.contains('prefopt-figure')) return;
    probe.loads += 1;
    if (probe.start !== null) { probe.samples.push(performance.now() - probe.start); probe.start = null; }
  }, true);
}"""


@pytest.fixture(scope="module")
def voila(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Voila serving a copy of notebooks/lectures/ (127.0.0.1, a token), and a Chromium page.

    Started as ``make lecture`` starts it (``--strip_sources=True``: no code on the page), plus
    ``--show_tracebacks=True`` so that a failing cell shows up on the page for the test to find.
    Full mode (no ``PREFOPT_SMOKE``): the latency is measured on what a lecturer shows.
    """
    work = tmp_path_factory.mktemp("voila")
    served = work / "lectures"
    shutil.copytree(LECTURES, served, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "*.py"))
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFOPT_SMOKE"}
    env.update(
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"),
        JUPYTER_CONFIG_DIR=str(work / "config"),
        JUPYTER_RUNTIME_DIR=str(work / "runtime"),
    )
    command = [
        sys.executable,
        "-m",
        "voila",
        str(served),
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        f"--port={port}",
        f"--token={token}",
        "--strip_sources=True",
        "--show_tracebacks=True",
    ]
    log = open(work / "voila.log", "w")
    server = subprocess.Popen(command, cwd=served, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/?token={token}", server, work / "voila.log")
        yield {
            "browser": browser,
            "base": base,
            "token": token,
            "shots": _screenshot_dir(tmp_path_factory),
            "log": work / "voila.log",
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _open_lecture(voila: dict, name: str) -> Any:
    """A new page on the lecture ``name``, its figure rendered; the latency probe installed."""
    page = voila["browser"].new_page(viewport={"width": 1200, "height": 900})
    page.add_init_script(f"({_LATENCY_PROBE})()")
    page.goto(f"{voila['base']}/voila/render/{name}.ipynb?token={voila['token']}")
    figure = page.locator("img.prefopt-figure").first
    figure.wait_for(state="visible", timeout=KERNEL_TIMEOUT_MS)
    return page


def _assert_clean(page: Any, name: str) -> None:
    """No code, no input cells, no tracebacks or stream output: the widget and the text only."""
    text = page.inner_text("body")
    for marker in ("Traceback", "Error:", "import ", "widgets."):
        assert marker not in text, f"{name}: {marker!r} is on the page:\n{text[:2000]}"
    for selector in (
        ".jp-CodeCell .jp-InputArea",
        ".jp-InputArea-editor",
        ".jp-CodeMirrorEditor",
        ".cm-editor",
        "pre code",
        "[data-mime-type='application/vnd.jupyter.stderr']",
        "[data-mime-type='application/vnd.jupyter.stdout']",
        "[data-mime-type='application/vnd.jupyter.error']",
    ):
        assert page.locator(selector).count() == 0, f"{name}: {selector} is on the page"


def _press_and_wait(page: Any, handle: Any, key: str, timeout_ms: float = 60_000) -> float:
    """Press ``key`` on ``handle``; wait for the figure's next load; the latency in ms."""
    before = page.evaluate("window.__prefopt.samples.length")
    handle.press(key)
    page.wait_for_function(
        "(n) => window.__prefopt.samples.length > n", arg=before, timeout=timeout_ms
    )
    return float(page.evaluate("window.__prefopt.samples[window.__prefopt.samples.length - 1]"))


def test_lecture_in_voila_shows_the_widget_only_and_a_slider_redraws(voila):
    name = "02_beta_explorer"
    page = _open_lecture(voila, name)
    assert "RLHF/DPO optimum" in page.inner_text("body")  # the markdown is there
    _assert_clean(page, name)
    figure = page.locator("img.prefopt-figure").first
    before_src, before_png = figure.get_attribute("src"), figure.screenshot()
    page.screenshot(path=str(voila["shots"] / f"voila_{name}_before.png"), full_page=True)
    readout = page.locator(".prefopt-beta .widget-readout").first
    assert readout.inner_text() == "1"
    handle = page.locator(".prefopt-beta .noUi-handle").first
    handle.focus()
    _press_and_wait(page, handle, "ArrowLeft")
    # Ten presses a decade, round values: 1 -> 0.79 -> 0.63, never 0.977.
    assert readout.inner_text() == "0.79"
    _press_and_wait(page, handle, "ArrowLeft")
    assert readout.inner_text() == "0.63"
    assert figure.get_attribute("src") != before_src
    assert figure.screenshot() != before_png, "the figure's pixels did not change"
    _assert_clean(page, name)
    page.screenshot(path=str(voila["shots"] / f"voila_{name}_after.png"), full_page=True)
    page.close()


# (lecture, control, key): a control of each widget, moved by the keyboard as a lecturer would, in
# one direction (every press a new value); the preference editor's number box steps by 0.01.
LATENCY_CASES = [
    ("02_beta_explorer", "beta", "ArrowLeft"),
    ("03_nash_learning", "tau", "ArrowRight"),
    ("03_nash_learning", "mixture", "ArrowRight"),
    ("01_preference_editor", "p01", "ArrowDown"),
]


@pytest.mark.parametrize(
    ("name", "control", "key"), LATENCY_CASES, ids=[f"{n}:{c}" for n, c, _ in LATENCY_CASES]
)
def test_widget_answers_a_key_press_at_once(voila, name, control, key):
    """Event to new image in the browser at K = 3: median of LATENCY_MOVES key presses.

    The numbers go to ``widget_latency.json`` beside the screenshots (benchmarks/widget_latency.md
    records them); the assertion is a generous bound.
    """
    page = _open_lecture(voila, name)
    if control.startswith("p"):
        handle = page.locator(f".prefopt-{control} input").first
    else:
        handle = page.locator(f".prefopt-{control} .noUi-handle").first
    handle.focus()
    samples = [_press_and_wait(page, handle, key) for _ in range(LATENCY_MOVES)]
    page.close()
    median = sorted(samples)[len(samples) // 2]
    results = voila["shots"] / "widget_latency.json"
    recorded = json.loads(results.read_text()) if results.exists() else {}
    recorded[f"{name}:{control}"] = {"median_ms": round(median, 1), "samples_ms": samples}
    results.write_text(json.dumps(recorded, indent=2) + "\n")
    assert median < LATENCY_BOUND_MS, f"{name} {control}: median {median:.0f} ms, {samples}"
