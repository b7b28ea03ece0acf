"""JupyterLab in a real browser: notebooks 03 and 07 run through the UI, driven by headless Chromium.

JupyterLab is started on 127.0.0.1 (random free port, random token) over a temporary copy of ``notebooks/``, with
its settings, workspaces, runtime files and checkpoints in a temporary folder and autosave off. Debian's
``chromium`` (``/usr/bin/chromium``, or ``$DASHKIT_CHROMIUM``) is driven through Playwright; Playwright's own
browser download is not used. What is checked:

- 03 (a trick notebook), run with Run > Run All Cells: every cell ran, no error output, the figures are images
  that loaded (``naturalWidth > 0``);
- 07 (the results explorer; ``demo=True`` in the copy: two tiny runs): the dashboard renders as live widgets (not
  as its text repr ``VBox(children=...)`` nor stuck at "Loading widget"); choosing the runs and the metrics view
  and clicking **show** fills the output below it with a table and one figure per run.

Screenshots go to ``artifacts/browser/`` (and ``*failure.png`` with the page's state when a step fails). The
checks are shown to fail where they should: on a real page with JupyterLab's widget manager switched off (a widget
shows as text) and a cell that raises, and on crafted pages for the rest (an image that did not load, a cell still
running, "Loading widget").

Without chromium, Playwright or JupyterLab the tests skip, saying why; under CI (``CI=true``) or with
``DASHKIT_BROWSER_TEST=required`` they fail instead, so the check cannot be lost silently.
``bash scripts/test.sh`` installs all three (``scripts/install_browser.sh`` for chromium).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = os.environ.get("DASHKIT_CHROMIUM", "/usr/bin/chromium")
TRICK = "03_kronecker_dilation"
EXPLORER = "07_results_explorer"
# set in the temporary copies only: 03 on its CI sizes; 07 makes its two tiny demo runs inside the copy and does
# not press "show" itself (the test does, in the page)
PARAMETERS: Dict[str, Dict[str, Any]] = {
    TRICK: {"smoke": True},
    EXPLORER: {"demo": True, "demo_root": "runs/explorer-demo", "drive": False},
}
STARTUP_S = 120  # JupyterLab answering /api/status
OPEN_S = 90  # a notebook open, with its kernel idle
RUN_S = 180  # Run All Cells finished (07 trains two tiny models)
SHOW_S = 60  # "show" filled the explorer's output

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------- availability

def _required() -> bool:
    return (os.environ.get("DASHKIT_BROWSER_TEST", "").lower() == "required"
            or os.environ.get("CI", "").lower() in ("true", "1", "yes"))


def _unavailable(why: str) -> None:
    """Skip, saying why; fail instead where the browser test is required (CI, DASHKIT_BROWSER_TEST=required)."""
    hint = "run `bash scripts/install_browser.sh` (as root) and `pip install -e .[dev]`, or `bash scripts/test.sh`"
    if _required():
        pytest.fail(f"the browser test is required here (CI or DASHKIT_BROWSER_TEST=required) but {why}; {hint}",
                    pytrace=False)
    pytest.skip(f"browser test not run: {why}; {hint}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium through Playwright (closed at the end)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        _unavailable(f"no chromium at {CHROMIUM} (set DASHKIT_CHROMIUM to use another)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package playwright is not installed")
    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, timeout=60_000,
                               args=["--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"])
    except Exception as e:
        pw.stop()
        raise RuntimeError(f"chromium at {CHROMIUM} did not start: {e}") from e
    try:
        yield b
    finally:
        try:
            b.close()
        finally:
            pw.stop()


# --------------------------------------------------------------------------------------------- JupyterLab

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _set_parameters(path: Path, values: Dict[str, Any]) -> None:
    """Append ``name = value`` lines to the parameters cell of the notebook at ``path`` (a temporary copy)."""
    book = json.loads(path.read_text(encoding="utf-8"))
    cell = next(c for c in book["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    source = "".join(cell["source"]).rstrip("\n")
    unknown = [name for name in values if not re.search(rf"^{name}\s*:", source, re.M)]
    assert not unknown, f"{path.name}: parameters {unknown} are not declared in its parameters cell"
    cell["source"] = source + "\n" + "".join(f"\n{name} = {value!r}" for name, value in values.items())
    path.write_text(json.dumps(book, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _die_with_parent() -> None:
    """In the server's process (Linux): SIGTERM when the test process dies, so that a killed test run (a timeout)
    leaves no server behind; the server shuts its kernels down on SIGTERM."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Lab:
    """A JupyterLab server on 127.0.0.1 over ``root``, its settings and runtime files under ``home``."""

    def __init__(self, root: Path, home: Path, disabled: Sequence[str] = ()):
        self.root, self.home, self.disabled = root, home, tuple(disabled)
        self.token = secrets.token_hex(16)
        self.port = 0
        self.proc: Optional[subprocess.Popen] = None
        self.log = home / "jupyterlab.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> Dict[str, str]:
        env = dict(os.environ)
        for name in ("MPLBACKEND", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR"):
            env.pop(name, None)  # Agg would drop the figures; no user config may change the lab
        settings = self.home / "settings"
        for plugin, values in {
            "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        }.items():
            path = settings / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values), encoding="utf-8")
        if self.disabled:  # front-end extensions switched off (the check that the widget check can fail)
            page_config = self.home / "config" / "labconfig" / "page_config.json"
            page_config.parent.mkdir(parents=True, exist_ok=True)
            page_config.write_text(json.dumps({"disabledExtensions": {name: True for name in self.disabled}}))
        for name, sub in (("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                          ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_CONFIG_DIR", "config"),
                          ("IPYTHONDIR", "ipython"), ("TMPDIR", "tmp")):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
            env[name] = str(self.home / sub)
        # the kernels import this checkout's dashkit, one thread each (2 shared cores), plain progress lines
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
        env.update(OMP_NUM_THREADS="1", DASHKIT_PROGRESS="plain", PYTHONUNBUFFERED="1")
        return env

    def start(self) -> "Lab":
        env = self._env()
        for _ in range(3):  # a port taken between choosing and binding: try another
            self.port = _free_port()
            cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
                   f"--port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
                   f"--ServerApp.root_dir={self.root}", f"--FileCheckpoints.root_dir={self.home / 'checkpoints'}",
                   "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly",
                   "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate"]
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True,
                                             preexec_fn=_die_with_parent)
            deadline = time.monotonic() + STARTUP_S
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    self.api("GET", "/api/status", timeout=5)
                    return self
                except (OSError, urllib.error.URLError):
                    time.sleep(0.5)
            if self.proc.poll() is None:
                raise TimeoutError(f"JupyterLab did not answer /api/status within {STARTUP_S} s:\n{self.log_tail()}")
        raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")

    def api(self, method: str, path: str, timeout: float = 10) -> Any:
        req = urllib.request.Request(self.url + path, method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        """Shut the kernels down (their sessions deleted), then the server's whole process group."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                for session in self.api("GET", "/api/sessions"):
                    self.api("DELETE", f"/api/sessions/{session['id']}", timeout=30)
        except (OSError, urllib.error.URLError, ValueError):
            pass  # the process group is killed below anyway
        finally:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue


def _serve(root: Path, home: Path, disabled: Sequence[str] = ()) -> Iterator[Lab]:
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        _unavailable("the Python package jupyterlab is not installed")
    server = Lab(root, home, disabled)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def lab(browser, tmp_path) -> Iterator[Lab]:
    """JupyterLab over a temporary copy of notebooks/ (with PARAMETERS set), stopped at the end."""
    root = tmp_path / "notebooks"
    # the notebooks only: not what earlier runs in place left there
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns("runs", "results", ".ipynb_checkpoints"))
    for name, values in PARAMETERS.items():
        _set_parameters(root / f"{name}.ipynb", values)
    yield from _serve(root, tmp_path / "lab")


SCRATCH = ["import ipywidgets as w\nw.VBox([w.Button(description='show')])", "print('before the error')", "1 / 0"]


@pytest.fixture
def lab_without_widgets(browser, tmp_path) -> Iterator[Lab]:
    """JupyterLab with the widget manager switched off, over a scratch notebook: a widget, then a failing cell."""
    root = tmp_path / "scratch"
    root.mkdir()
    cells = [{"cell_type": "code", "execution_count": None, "id": f"scratch-{i}", "metadata": {}, "outputs": [],
              "source": source} for i, source in enumerate(SCRATCH)]
    book = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                        "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    (root / "scratch.ipynb").write_text(json.dumps(book, indent=1) + "\n", encoding="utf-8")
    yield from _serve(root, tmp_path / "lab", disabled=["@jupyter-widgets/jupyterlab-manager"])


# ------------------------------------------------------------------------------------------- page checks

# What the page shows, read in one go: the code cells' prompts, error outputs, images and widgets in the outputs.
_STATE_JS = """() => {
  const outs = Array.from(document.querySelectorAll('.jp-OutputArea-output'));
  const cells = Array.from(document.querySelectorAll('.jp-Notebook .jp-CodeCell'));
  return {
    prompts: cells.map(c => (c.querySelector('.jp-InputArea-prompt') || {}).innerText || ''),
    errors: outs.filter(o => o.getAttribute('data-mime-type') === 'application/vnd.jupyter.stderr'
                             && /Traceback/.test(o.innerText)).map(o => o.innerText.slice(0, 2000)),
    images: Array.from(document.querySelectorAll('.jp-OutputArea-output img')).map(
        i => ({complete: i.complete, width: i.naturalWidth, widget: !!i.closest('.jupyter-widgets')})),
    widgets: document.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
    text: outs.map(o => o.innerText).join('\\n'),
    kernel: Array.from(document.querySelectorAll('.jp-StatusBar-Widget')).map(w => w.innerText).join(' | '),
    dialog: Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.innerText).join(' | '),
  };
}"""

TEXT_REPRS = ("VBox(children=", "HBox(children=", "Loading widget", "Error displaying widget")


def page_state(page: Any) -> Dict[str, Any]:
    return page.evaluate(_STATE_JS)


def error_problems(state: Dict[str, Any]) -> List[str]:
    """Error outputs (tracebacks) and code cells that did not run, as readable lines."""
    problems = [f"error output: {text}" for text in state["errors"]]
    unrun = [i for i, p in enumerate(state["prompts"]) if not re.search(r"\[\d+\]", p)]
    if not state["prompts"]:
        problems.append("no code cells in the page")
    elif unrun:
        problems.append(f"code cells {unrun} (of {len(state['prompts'])}) did not run: prompts "
                        f"{[state['prompts'][i] for i in unrun]}")
    return problems


def image_problems(state: Dict[str, Any], at_least: int) -> List[str]:
    """Fewer than ``at_least`` images in the outputs, or an image that did not load (naturalWidth 0)."""
    images = state["images"]
    broken = [i for i, im in enumerate(images) if not (im["complete"] and im["width"] > 0)]
    problems = [f"{len(images)} images in the outputs, expected at least {at_least}"] if len(images) < at_least \
        else []
    return problems + ([f"images {broken} did not load (naturalWidth 0)"] if broken else [])


def widget_problems(state: Dict[str, Any]) -> List[str]:
    """No rendered widget, or a widget shown as text (its repr, "Loading widget", a display error)."""
    problems = [] if state["widgets"] else ["no rendered widget (.jupyter-widgets) in the outputs"]
    return problems + [f"the outputs show {text!r}: a widget rendered as text" for text in TEXT_REPRS
                       if text in state["text"]]


def _wait(what: str, seconds: float, poll: Any, interval: float = 0.5) -> Any:
    """Call ``poll()`` until it returns something truthy; TimeoutError naming ``what`` after ``seconds``."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        last = poll()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {seconds:.0f} s")


def _screenshot(page: Any, name: str, element: Any = None) -> Path:
    """``artifacts/browser/<name>.png``: the page, or ``element`` whole (the window is made tall enough for it)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if element is None:
        page.screenshot(path=str(path), timeout=30_000)
        return path
    size = page.viewport_size
    box = element.bounding_box() or {"height": 0}
    page.set_viewport_size({"width": size["width"], "height": int(min(max(size["height"], box["height"] + 400),
                                                                        4000))})
    try:
        element.scroll_into_view_if_needed(timeout=10_000)
        element.screenshot(path=str(path), timeout=30_000)
    finally:
        page.set_viewport_size(size)
    return path


# ------------------------------------------------------------------------------------------------ driving

def open_notebook(context: Any, lab: Lab, name: str) -> Any:
    """A page with notebook ``name`` open and its kernel idle."""
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{lab.url}/lab/tree/{name}.ipynb?reset&token={lab.token}", wait_until="domcontentloaded",
              timeout=60_000)
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=OPEN_S * 1000)
    counts: List[int] = []

    def ready() -> bool:  # the cell count has settled and the status bar's kernel item reads Idle
        counts.append(page.locator(".jp-Notebook .jp-Cell").count())
        state = page_state(page)
        return len(counts) >= 3 and counts[-1] == counts[-3] > 0 and "Idle" in state["kernel"]

    _wait(f"{name}: the notebook open with its kernel idle", OPEN_S, ready)
    return page


def run_all(page: Any, name: str) -> Dict[str, Any]:
    """Run > Run All Cells, then wait until no cell is running and every cell ran (or one failed)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()

    def finished() -> Optional[Dict[str, Any]]:
        state = page_state(page)
        if state["dialog"]:
            raise AssertionError(f"{name}: a dialog opened: {state['dialog']}")
        running = any("*" in p for p in state["prompts"])
        ran = all(re.search(r"\[\d+\]", p) for p in state["prompts"])
        return state if not running and "Idle" in state["kernel"] and (ran or state["errors"]) else None

    return _wait(f"{name}: Run All Cells finished", RUN_S, finished, interval=1.0)


def _fail_with_page(page: Any, name: str, problems: List[str]) -> None:
    if problems:
        shot = _screenshot(page, f"{name}-failure")
        pytest.fail(f"{name}: " + "; ".join(problems) + f" (screenshot: {shot})", pytrace=False)


def test_notebooks_run_in_jupyterlab(browser, lab):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = None
    try:
        # 03: a trick notebook, every cell through the UI
        page = open_notebook(context, lab, TRICK)
        state = run_all(page, TRICK)
        if state["images"]:  # the screenshot shows the first figure
            page.locator(".jp-OutputArea-output img").first.scroll_into_view_if_needed(timeout=10_000)
        _screenshot(page, TRICK)
        _fail_with_page(page, TRICK, error_problems(state) + image_problems(state, at_least=1))
        page.close()

        # 07: the explorer renders as widgets; choosing runs and pressing "show" fills its output
        page = open_notebook(context, lab, EXPLORER)
        state = run_all(page, EXPLORER)
        _fail_with_page(page, EXPLORER, error_problems(state))
        explorer = page.locator(".jp-OutputArea-output .jupyter-widgets.widget-vbox").filter(
            has=page.locator(".widget-select-multiple")).first
        try:
            explorer.wait_for(timeout=30_000)
        except Exception:
            pass  # reported by widget_problems below
        _fail_with_page(page, EXPLORER, widget_problems(page_state(page)))
        assert explorer.locator("table").count() == 0 and explorer.locator("img").count() == 0, \
            "the explorer's output is filled before show was pressed"
        _screenshot(page, f"{EXPLORER}-before-show", explorer)

        runs = explorer.locator(".widget-select-multiple select")
        labels = [t.strip() for t in runs.locator("option").all_inner_texts()]
        assert len(labels) == 2, f"the explorer offers runs {labels}, expected the two demo runs"
        runs.select_option(label=labels)
        explorer.locator(".widget-toggle-buttons button", has_text=re.compile(r"^\s*metrics\s*$")).click()
        explorer.locator("button", has_text=re.compile(r"^\s*show\s*$")).click()

        def filled() -> bool:
            images = [im for im in page_state(page)["images"] if im["widget"]]
            return (explorer.locator("table").count() > 0 and len(images) >= len(labels)
                    and all(im["complete"] and im["width"] > 0 for im in images))

        try:
            _wait(f"{EXPLORER}: show filled the explorer's output (a table and {len(labels)} figures)", SHOW_S,
                  filled)
        except TimeoutError as e:
            _fail_with_page(page, EXPLORER, [str(e)])
        _screenshot(page, f"{EXPLORER}-after-show", explorer)
        table = explorer.locator("table").first.inner_text()
        for label in labels:
            assert label in table, f"run {label!r} is not in the metrics table:\n{table}"
        assert "dash" in table and "baseline" in table, f"the metrics table lacks dash/baseline:\n{table}"
        after = page_state(page)
        _fail_with_page(page, EXPLORER, widget_problems(after) + [f"error output: {e}" for e in after["errors"]])
        _screenshot(page, f"{EXPLORER}-page")
    except Exception:  # what the page and the server showed, for whoever reads the failure
        if page is not None and not page.is_closed():
            _screenshot(page, "failure")
        print(f"JupyterLab's log (end):\n{lab.log_tail()}")
        raise
    finally:
        context.close()


# ---------------------------------------------------------------------------------- the checks can fail

_CRAFTED = """<div class="jp-Notebook">
  <div class="jp-CodeCell"><div class="jp-InputArea-prompt">[1]:</div>
    <div class="jp-OutputArea-output" data-mime-type="{mime}">{output}</div></div>
  <div class="jp-CodeCell"><div class="jp-InputArea-prompt">{prompt}</div></div>
</div>"""
_PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6"
        "kgAAAABJRU5ErkJggg==")


def test_checks_catch_widgets_as_text_and_a_failing_cell(browser, lab_without_widgets):
    """On a real page: without the widget manager a widget shows as its text repr, and the widget check says so;
    a cell that raises shows a traceback, and the error check says so."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = open_notebook(context, lab_without_widgets, "scratch")
        state = run_all(page, "scratch")
        _screenshot(page, "scratch-without-widget-manager")
        assert widget_problems(state) == ["no rendered widget (.jupyter-widgets) in the outputs",
                                          "the outputs show 'VBox(children=': a widget rendered as text"]
        errors = error_problems(state)
        assert len(errors) == 1 and "ZeroDivisionError" in errors[0] and "Traceback" in errors[0], errors
        assert "before the error" in state["text"]  # the cells before it ran
    finally:
        context.close()


def test_page_checks_catch_broken_pages(browser):
    """The checks above pass a good page and catch each failure, on crafted pages with JupyterLab's classes."""
    page = browser.new_page()
    try:
        def state(output: str, mime: str = "text/html", prompt: str = "[2]:") -> Dict[str, Any]:
            page.set_content(_CRAFTED.format(output=output, mime=mime, prompt=prompt))
            page.wait_for_load_state("load")
            return page_state(page)

        good = state(f'<div class="jupyter-widgets widget-vbox"><img class="widget-image" src="{_PNG}"></div>')
        assert good["widgets"] == 1 and good["images"][0]["width"] == 1
        assert widget_problems(good) == [] and error_problems(good) == [] and image_problems(good, 1) == []

        text_repr = state("VBox(children=(Dropdown(description='task'), Button(description='show')))",
                          mime="text/plain")
        assert any("no rendered widget" in p for p in widget_problems(text_repr))
        assert any("VBox(children=" in p for p in widget_problems(text_repr))
        loading = state('<div class="jupyter-widgets">Loading widget...</div>')
        assert any("Loading widget" in p for p in widget_problems(loading))

        broken = state('<img src="data:image/png;base64,AAAA">')
        assert image_problems(broken, 1) == ["images [0] did not load (naturalWidth 0)"]
        assert image_problems(state("<pre>no figure</pre>"), 1) == ["0 images in the outputs, expected at least 1"]

        error = state("ZeroDivisionError  Traceback (most recent call last)", mime="application/vnd.jupyter.stderr")
        assert any("ZeroDivisionError" in p for p in error_problems(error))
        warning = state("UserWarning: something", mime="application/vnd.jupyter.stderr")
        assert error_problems(warning) == []  # a warning on stderr is not an error
        assert any("did not run" in p for p in error_problems(state("<pre>1</pre>", prompt="[ ]:")))
        assert any("did not run" in p for p in error_problems(state("<pre>1</pre>", prompt="[*]:")))
    finally:
        page.close()
