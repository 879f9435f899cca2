"""The lectures as a student meets them: opened and run in JupyterLab, in a real Chromium.

``make browser-test`` (or ``python -m mbrl_course.grading.browser``) copies the lectures to a temporary
folder, starts JupyterLab there (a random token, a free port, ``MBRL_COURSE_BUDGET=smoke`` unless ``--tier``
says otherwise), and for each lecture drives a headless Chromium through Playwright:

1. open the notebook, wait for its kernel, run JupyterLab's "Run All Cells" command;
2. wait until the kernel is idle and no cell shows ``[*]`` (bounded by ``--timeout`` per lecture);
3. fail on what a student would see go wrong (:func:`problems_in_html`, :func:`problems_in_notebook`):
   an error output (a traceback), a cell that never ran, a widget that does not render ("Error displaying
   widget", "Loading widget...", a model not found, a widget shown as its text repr), a dialog such as
   "Kernel Restarting";
4. save a screenshot of the whole notebook, outputs included (``--screenshots``, default
   ``benchmarks/out/browser/NN-topic.png``).

The repository's notebooks are never opened or written: the run works on copies. Jupyter is stopped
(its whole process group) on every way out, Ctrl-C and SIGTERM included.

Playwright drives the Chromium installed on the system (``MBRL_COURSE_CHROMIUM``, else ``chromium``,
``chromium-browser``, ``google-chrome`` on the PATH); it never downloads a browser. To install both::

    sudo apt-get install chromium          # Debian/Ubuntu (or any Chrome/Chromium)
    pip install playwright                 # never `playwright install`: the system browser is used

Usage::

    python -m mbrl_course.grading.browser                      # all lectures, smoke tier
    python -m mbrl_course.grading.browser --lectures 01,05     # lectures 01 and 05 only
    python -m mbrl_course.grading.browser --tier default --timeout 3600 --screenshots /tmp/shots

Exit status: 0 every lecture ran cleanly, 1 some did not (each problem is printed with its cell), 2 the test
cannot run here (no Chromium or Playwright, JupyterLab did not start), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mbrl_course.budget import TIERS
from mbrl_course.grading.notebooks import repo_root

CHROMIUM_ENV = "MBRL_COURSE_CHROMIUM"
"""Environment variable naming the Chromium (or Chrome) executable to drive; overrides the PATH search."""

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
"""Executables searched on the PATH, in this order, when :data:`CHROMIUM_ENV` is not set."""

INSTALL_HINT = (
    "install a Chromium and Playwright's Python package (no browser download is needed):\n"
    "    sudo apt-get install chromium      # or any Chrome/Chromium; or set MBRL_COURSE_CHROMIUM=/path/to/it\n"
    "    pip install playwright             # do not run `playwright install`\n"
    "then run `make browser-test`"
)
"""What to do where the browser test cannot run."""

DEFAULT_SCREENSHOTS = Path("benchmarks") / "out" / "browser"
"""Where screenshots go by default, relative to the repository root (ignored by git)."""

DEFAULT_TIMEOUT = 1800.0
"""Seconds one lecture may take, from opening it to the last cell's end (smoke tier lectures take minutes)."""

STARTUP_TIMEOUT = 120.0
"""Seconds JupyterLab may take to answer, and a notebook's kernel to become idle."""

SCREENSHOT_MAX_HEIGHT = 60_000
"""Tallest screenshot in CSS pixels; a notebook taller than this is cut at the bottom (and the message says so)."""

STDERR_MIME = "application/vnd.jupyter.stderr"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

WIDGET_FAILURES = (
    "Error displaying widget",
    "Loading widget...",
    "Loading widget…",
    "model not found",
    "Failed to load model class",
    "Could not create a view",
    "Failed to create view",
    "Could not create a model",
    "Error creating widget",
    "A Jupyter widget could not be displayed",
)
"""Texts ipywidgets and JupyterLab show in place of a widget that does not render."""

WIDGET_REPR = re.compile(
    r"^\s*(?:[A-Z][A-Za-z]*(?:Box|Slider|Widget|Text|Dropdown|Button|Output|Play|Tab|Accordion|Label|HTML|Image|"
    r"Checkbox|Select|Progress|ToggleButtons|RadioButtons)|interactive)\(\s*(?:children|value|description|"
    r"layout|options|outputs)=")
"""A widget printed as its text repr: what JupyterLab shows when no widget manager renders it."""

ERROR_LINE = re.compile(r"^\s*(?:\w+\.)*\w*(?:Error|Exception|Interrupt|Exit)\b(?::|\s*$)", re.MULTILINE)
"""The last line of a Python traceback (``ValueError: ...``, ``KeyboardInterrupt``, ``SyntaxError: ...``)."""

LAB_SETTINGS = {
    # every cell stays in the page, so that its outputs can be read and photographed; no blank page below
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none", "scrollPastEnd": False},
    # no "would you like news?" toast over the notebook
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                         "checkForUpdates": False},
}
"""JupyterLab user settings of the checker's own (a temporary settings folder; the user's are not read)."""


class BrowserTestError(RuntimeError):
    """The browser test could not run (no Chromium, no Playwright, JupyterLab did not start)."""


# ----------------------------------------------------------------------------------------------------------
# Finding the browser


def find_chromium(env: Mapping[str, str] | None = None,
                  which: Callable[[str], str | None] = shutil.which) -> str | None:
    """Path of the Chromium to drive, or None where none is found.

    ``$MBRL_COURSE_CHROMIUM`` wins when set (a path, or a name looked up on the PATH); it must exist, else
    :class:`BrowserTestError` says so (a typo should not silently skip the test). Otherwise the first of
    :data:`CHROMIUM_NAMES` on the PATH.
    """
    env = os.environ if env is None else env
    chosen = env.get(CHROMIUM_ENV, "").strip()
    if chosen:
        found = which(chosen)
        if found is None and Path(chosen).is_file() and os.access(chosen, os.X_OK):
            found = chosen
        if found is None:
            raise BrowserTestError(f"{CHROMIUM_ENV}={chosen!r} is not an executable file nor a program on the PATH")
        return found
    for name in CHROMIUM_NAMES:
        found = which(name)
        if found:
            return found
    return None


def playwright_available() -> bool:
    """True when Playwright's Python package imports."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def why_not_runnable(env: Mapping[str, str] | None = None,
                     which: Callable[[str], str | None] = shutil.which) -> str | None:
    """Why the browser test cannot run here (None: it can), with :data:`INSTALL_HINT`."""
    missing = []
    try:
        if find_chromium(env, which) is None:
            missing.append(f"no Chromium found ({CHROMIUM_ENV} unset; none of {', '.join(CHROMIUM_NAMES)} on the PATH)")
    except BrowserTestError as err:
        missing.append(str(err))
    if not playwright_available():
        missing.append("Playwright's Python package is not installed")
    if not missing:
        return None
    return "; ".join(missing) + "\n" + INSTALL_HINT


# ----------------------------------------------------------------------------------------------------------
# Port, token, URLs


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def new_token() -> str:
    """A random token for the Jupyter server (48 hex digits): nobody else on the machine can drive it."""
    return secrets.token_hex(24)


def lab_url(port: int, token: str, notebook: str | None = None, host: str = "127.0.0.1") -> str:
    """The JupyterLab URL that opens ``notebook`` (a path relative to the server's root), with the token."""
    path = "/lab" if notebook is None else "/lab/tree/" + urllib.parse.quote(Path(notebook).as_posix())
    return f"http://{host}:{port}{path}?" + urllib.parse.urlencode({"token": token, "reset": ""})


def redact(text: str, token: str) -> str:
    """``text`` with the token replaced by ``***`` (for messages and logs)."""
    return text.replace(token, "***") if token else text


# ----------------------------------------------------------------------------------------------------------
# Choosing and copying the lectures


def select_lectures(available: Sequence[Path], wanted: str | None) -> list[Path]:
    """The lectures named by ``wanted`` (``"01,05"``: numbers or file stems, comma-separated; None or ``"all"``:
    every one), in course order. Raises ``ValueError`` naming what matched nothing."""
    available = sorted(available, key=lambda p: p.name)
    if not wanted or wanted.strip().lower() == "all":
        return list(available)
    chosen, unknown = [], []
    for item in (w.strip() for w in wanted.split(",")):
        if not item:
            continue
        key = item.removesuffix(".ipynb")
        if key.isdigit():
            key = f"{int(key):02d}"
        matches = [p for p in available if p.stem == key or p.stem.split("-", 1)[0] == key]
        if not matches:
            unknown.append(item)
        chosen += [p for p in matches if p not in chosen]
    if unknown:
        names = ", ".join(p.stem for p in available)
        raise ValueError(f"--lectures: {', '.join(unknown)} matches no lecture (have: {names})")
    return sorted(chosen, key=lambda p: p.name)


def copy_lectures(source: Path, destination: Path) -> None:
    """Copy the lectures folder (notebooks and any files beside them, no checkpoints) to ``destination``."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
                    dirs_exist_ok=True)


# ----------------------------------------------------------------------------------------------------------
# What a student would see go wrong


@dataclass
class Problem:
    """One thing wrong in a run notebook: the cell (index in the notebook, None for the page) and what."""

    cell: int | None
    what: str

    def __str__(self) -> str:
        return f"{'page' if self.cell is None else f'cell {self.cell}'}: {self.what}"


def _short(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_summary(text: str) -> str:
    """The last ``SomeError: message`` line of a traceback (else its last non-empty line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    return _short((errors or lines or ["(empty)"])[-1])


def _cells(html: str) -> list:
    """The ``.jp-Cell`` elements of a notebook's HTML, in page order."""
    from bs4 import BeautifulSoup

    return BeautifulSoup(html, "html.parser").select(".jp-Cell")


def _outputs(cell) -> list:
    """The cell's own output elements (one per output of the model), not those nested in an Output widget."""
    return [o for o in cell.select(".jp-OutputArea-output")
            if o.find_parent(class_="jp-OutputArea-output") is None]


def _widget_failure(text: str) -> str | None:
    return next((f for f in WIDGET_FAILURES if f.lower() in text.lower()), None)


def _rendered_widget(output) -> bool:
    """True when the output element shows a widget (ipywidgets' ``jupyter-widgets`` element, no failure text),
    or showed one that the kernel closed since (ipywidgets then hides the output: ``lm-mod-hidden``, empty;
    a tqdm progress bar with ``leave=False`` does so)."""
    classes = output.get("class", [])
    if "lm-mod-hidden" in classes and not output.get_text().strip():
        return True
    shows = "jupyter-widgets" in classes or output.select_one(".jupyter-widgets") is not None
    return shows and _widget_failure(output.get_text()) is None


def problems_in_html(html: str) -> list[Problem]:
    """What is wrong in a notebook's rendered page (the HTML of JupyterLab's ``.jp-Notebook``, outputs included,
    and of any open dialog).

    Per cell (``.jp-Cell``, indexed in page order, which is the notebook's order):

    - an error output: an output of mime type ``application/vnd.jupyter.stderr`` that holds a traceback
      (``Traceback`` or a ``SomeError: ...`` line; JupyterLab renders error outputs so); stderr text
      without one (a warning) is fine;
    - a widget that does not render: one of :data:`WIDGET_FAILURES` in an output ("Error displaying widget:
      model not found", "Loading widget..."), or a widget shown as its text repr (:data:`WIDGET_REPR`: no
      widget manager in the page);
    - a cell still running or queued: its prompt shows ``[*]``.

    And for the page: an open dialog (``.jp-Dialog``, e.g. "Kernel Restarting").
    """
    from bs4 import BeautifulSoup

    problems: list[Problem] = []
    for index, cell in enumerate(_cells(html)):
        prompt = cell.select_one(".jp-InputPrompt")
        if prompt is not None and "[*]" in prompt.get_text():
            problems.append(Problem(index, "still running or queued ([*]) when the run was over"))
        for output in _outputs(cell):
            mime = output.get("data-mime-type", "")
            text = output.get_text()
            if mime == STDERR_MIME and ("Traceback" in text or ERROR_LINE.search(text)):
                problems.append(Problem(index, f"error output: {_error_summary(text)}"))
            elif _widget_failure(text) is not None:
                problems.append(Problem(index, f"widget does not render: {_short(text, 200)!r}"))
            elif mime == "text/plain" and WIDGET_REPR.search(text):
                problems.append(Problem(index, f"widget shown as text (no widget manager): {_short(text, 120)!r}"))
    for dialog in BeautifulSoup(html, "html.parser").select(".jp-Dialog"):
        problems.append(Problem(None, f"dialog open: {_short(dialog.get_text(' '), 200)!r}"))
    return problems


def _source(cell: Mapping) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def problems_in_notebook(nb: Mapping) -> list[Problem]:
    """What is wrong in the notebook's model after the run (nbformat JSON as JupyterLab holds it):
    error outputs (``ename: evalue``) and non-empty code cells that never ran (no execution count)."""
    problems: list[Problem] = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                problems.append(Problem(index, f"error output: {output.get('ename', '?')}: "
                                               f"{_short(str(output.get('evalue', '')))}"))
        if _source(cell).strip() and cell.get("execution_count") is None:
            problems.append(Problem(index, "never ran (no execution count)"))
    return problems


def widgets_not_rendered(html: str, nb: Mapping) -> list[Problem]:
    """Cells whose model holds more widget outputs (``application/vnd.jupyter.widget-view+json``) than the page
    shows rendered widgets: a widget that failed, still loads, or has no widget manager to draw it. A widget
    the kernel closed (its output hidden, or its ``model_id`` emptied) is not missing."""
    problems: list[Problem] = []
    cells = _cells(html)
    for index, cell in enumerate(nb.get("cells", [])):
        expected = sum(bool(output.get("data", {}).get(WIDGET_MIME, {}).get("model_id"))
                       for output in cell.get("outputs", []))
        if not expected:
            continue
        shown = sum(_rendered_widget(o) for o in _outputs(cells[index])) if index < len(cells) else 0
        if shown < expected:
            problems.append(Problem(index, f"widget does not render: {expected} widget output(s), {shown} shown"))
    return problems


def problems_in_page(html: str, nb: Mapping) -> list[Problem]:
    """Everything :func:`problems_in_notebook`, :func:`problems_in_html` and :func:`widgets_not_rendered` find,
    one message per cell and kind of problem."""
    return merge_problems(problems_in_notebook(nb), problems_in_html(html), widgets_not_rendered(html, nb))


def merge_problems(*groups: Sequence[Problem]) -> list[Problem]:
    """The problems of all groups, one per (cell, kind of problem), in cell order (the page's last)."""
    merged: dict[tuple[int | None, str], Problem] = {}
    for group in groups:
        for problem in group:
            merged.setdefault((problem.cell, problem.what.split(":", 1)[0]), problem)
    return sorted(merged.values(), key=lambda p: (p.cell is None, p.cell or 0))


# ----------------------------------------------------------------------------------------------------------
# JupyterLab


def lab_environment(tier: str, home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the Jupyter server (its kernels inherit it): the compute tier, one thread per kernel
    unless set (progress bars stay as the caller has them: they are widgets a student sees), and Jupyter's settings, workspaces, config and runtime folders under ``home`` so that the
    user's own never change what the run sees, nor the run the user's."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    env = dict(os.environ if base is None else base)
    env["MBRL_COURSE_BUDGET"] = tier
    env.setdefault("OMP_NUM_THREADS", "1")
    for name, folder in (("JUPYTERLAB_SETTINGS_DIR", "settings"), ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                         ("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime")):
        env[name] = str(home / folder)
    return env


def write_lab_settings(settings_dir: Path) -> None:
    """Write :data:`LAB_SETTINGS` into a JupyterLab user-settings folder."""
    for name, values in LAB_SETTINGS.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def lab_command(root: Path, port: int, token: str, python: str = sys.executable) -> list[str]:
    """The command that starts JupyterLab on ``127.0.0.1:port`` serving ``root``, protected by ``token``, with
    the application object exposed to the page (``window.jupyterapp``, which the checker drives)."""
    command = [
        python, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}", "--ServerApp.password=",
        f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI machines often run as root
    return command


@dataclass
class JupyterLab:
    """A running JupyterLab server (started by :func:`running_lab`)."""

    process: subprocess.Popen
    port: int
    token: str
    log: Path
    sessions: list[str] = field(default_factory=list)

    def url(self, notebook: str | None = None) -> str:
        return lab_url(self.port, self.token, notebook)

    def api(self, path: str, method: str = "GET", timeout: float = 10.0):
        """Call the server's REST API; returns the decoded JSON (None for an empty answer)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return redact("\n".join(text.splitlines()[-lines:]), self.token)

    def shutdown_kernels(self) -> None:
        """Shut down every session's kernel (frees the memory a finished lecture holds)."""
        with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
            for session in self.api("sessions") or []:
                self.api(f"sessions/{session['id']}", method="DELETE")


def wait_for_lab(lab: JupyterLab, timeout: float = STARTUP_TIMEOUT) -> None:
    """Wait until the server answers ``/api/status``; :class:`BrowserTestError` (with its log) if it exits or
    does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise BrowserTestError(f"JupyterLab exited with code {lab.process.returncode} before answering; "
                                   f"its log ({lab.log}):\n{lab.log_tail()}")
        with contextlib.suppress(OSError, ValueError, urllib.error.URLError):
            lab.api("status", timeout=2.0)
            return
        time.sleep(0.5)
    raise BrowserTestError(f"JupyterLab did not answer on port {lab.port} within {timeout:.0f} s; "
                           f"its log ({lab.log}):\n{lab.log_tail()}")


def stop_process_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop ``process`` and every process it started (its process group): SIGTERM, then SIGKILL after
    ``grace`` seconds. Safe to call on a process that has already exited."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    # children the server left in its group go too (its kernels have groups of their own: see kernel_pids)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)


def kernel_pids(runtime_dir: Path) -> list[int]:
    """Processes whose command line names a file in ``runtime_dir``: the kernels of the server that uses it
    (each is started with ``-f RUNTIME_DIR/kernel-ID.json``, in a process group of its own). Linux only
    (``/proc``); elsewhere an empty list."""
    marker = str(runtime_dir) + os.sep
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(entry.name))
    return [pid for pid in pids if pid != os.getpid()]


@contextlib.contextmanager
def running_lab(root: Path, home: Path, tier: str = "smoke", attempts: int = 3) -> Iterator[JupyterLab]:
    """Start JupyterLab serving ``root`` (its settings and log under ``home``), yield it, and stop it (with its
    kernels) however the block ends. A port taken between choosing and binding it gets another try."""
    env = lab_environment(tier, home)
    write_lab_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
    for folder in ("workspaces", "config", "runtime"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    token = new_token()
    last_error: BrowserTestError | None = None
    for attempt in range(attempts):
        port = free_port()
        log = home / f"jupyterlab-{attempt}.log"
        with open(log, "wb") as log_file:
            process = subprocess.Popen(lab_command(root, port, token), cwd=root, env=env, stdin=subprocess.DEVNULL,
                                       stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        lab = JupyterLab(process, port, token, log)
        try:
            wait_for_lab(lab)
        except BrowserTestError as err:
            stop_process_group(process)
            last_error = err
            if "address already in use" in lab.log_tail(200).lower():
                continue
            raise
        except BaseException:
            stop_process_group(process)
            raise
        try:
            yield lab
        finally:
            lab.shutdown_kernels()
            stop_process_group(process)
            for pid in kernel_pids(Path(env["JUPYTER_RUNTIME_DIR"])):  # a kernel the server left behind
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        return
    raise last_error or BrowserTestError("JupyterLab did not start")


# ----------------------------------------------------------------------------------------------------------
# The browser

_FIND_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.content.model) return w;
  }
  return null;
}
"""

JS_PANEL_STATE = f"""
(path) => {{
  const panel = ({_FIND_PANEL})(path);
  if (!panel) return {{found: false, app: !!window.jupyterapp}};
  const ctx = panel.sessionContext;
  const kernel = ctx && ctx.session ? ctx.session.kernel : null;
  const prompts = Array.from(panel.node.querySelectorAll('.jp-InputPrompt')).map(p => p.textContent.trim());
  return {{
    found: true, app: true,
    ready: !!(panel.context.isReady && ctx && ctx.isReady),
    kernel: kernel ? kernel.status : null,
    connection: kernel ? kernel.connectionStatus : null,
    running: prompts.filter(p => p.includes('[*]')).length,
    cells: panel.content.widgets.length,
    dialog: document.querySelector('.jp-Dialog') ? document.querySelector('.jp-Dialog').innerText : null,
    runAllError: window.__runAllError || null,
  }};
}}
"""

JS_RUN_ALL = f"""
async (path) => {{
  const app = window.jupyterapp;
  const panel = ({_FIND_PANEL})(path);
  app.shell.activateById(panel.id);
  await panel.context.ready;
  await panel.sessionContext.ready;
  // not awaited: the command's promise ends with the last cell, and the checker bounds that wait itself
  window.__runAllError = null;
  app.commands.execute('notebook:run-all-cells').catch(err => {{ window.__runAllError = String(err); }});
}}
"""

JS_NOTEBOOK = f"""
(path) => {{
  const panel = ({_FIND_PANEL})(path);
  return {{html: panel.content.node.outerHTML, model: panel.content.model.toJSON(),
          dialogs: Array.from(document.querySelectorAll('.jp-Dialog')).map(d => d.outerHTML).join('')}};
}}
"""

JS_PAGE_HEIGHT = f"""
(path) => {{
  const panel = ({_FIND_PANEL})(path);
  const app = window.jupyterapp;
  app.shell.collapseLeft(); app.shell.collapseRight();
  const scroller = panel.content.outerNode || panel.content.node;
  scroller.scrollTop = 0;
  return Math.ceil(window.innerHeight - scroller.clientHeight + scroller.scrollHeight);
}}
"""


@dataclass
class LectureResult:
    """How one lecture went in the browser."""

    name: str
    seconds: float
    problems: list[Problem]
    screenshot: Path | None = None
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        head = f"{'ok  ' if self.ok else 'FAIL'} {self.name} ({self.seconds:.0f} s"
        head += f", screenshot {self.screenshot})" if self.screenshot else ", no screenshot)"
        lines = [head] + [f"     {problem}" for problem in self.problems]
        if self.note:
            lines.append(f"     note: {self.note}")
        return "\n".join(lines)


def _state(page, name: str) -> dict:
    return page.evaluate(JS_PANEL_STATE, name)


def run_lecture(context, lab: JupyterLab, name: str, timeout: float, screenshots: Path | None,
                log: Callable[[str], None] = print, save_html: bool = False) -> LectureResult:
    """Open ``name`` (a notebook at the server's root) in a new page, run all its cells, wait for the end
    (at most ``timeout`` seconds), and return what went wrong, with a screenshot when ``screenshots`` is set
    (and, with ``save_html``, the notebook's rendered HTML beside it)."""
    start = time.monotonic()
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda err: page_errors.append(str(err)))
    problems: list[Problem] = []
    note = ""
    shot: Path | None = None

    def elapsed() -> float:
        return time.monotonic() - start

    try:
        page.goto(lab.url(name), wait_until="domcontentloaded", timeout=STARTUP_TIMEOUT * 1000)
        # 1. the notebook is open and its kernel idle
        state: dict = {}
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            state = _state(page, name)
            if state.get("found") and state.get("ready") and state.get("kernel") == "idle":
                break
            page.wait_for_timeout(500)
        else:
            if not state.get("app"):
                raise BrowserTestError("JupyterLab's application is not exposed in the page (window.jupyterapp)")
            raise BrowserTestError(f"the notebook did not open with an idle kernel within {STARTUP_TIMEOUT:.0f} s "
                                   f"(last state: {state})")
        # 2. Run All Cells, then wait: kernel idle, no [*], twice in a row a second apart
        page.evaluate(JS_RUN_ALL, name)
        log(f"     {name}: running all {state.get('cells')} cells")
        settled, last_report = 0, time.monotonic()
        deadline = start + timeout
        while True:
            page.wait_for_timeout(1000)
            state = _state(page, name)
            if state.get("kernel") in ("dead", "unknown") or state.get("dialog"):
                break
            if state.get("runAllError"):
                raise BrowserTestError(f"Run All Cells failed: {state['runAllError']}")
            settled = settled + 1 if state.get("kernel") == "idle" and state.get("running") == 0 else 0
            if settled >= 2:
                break
            if time.monotonic() > deadline:
                problems.append(Problem(None, f"timed out after {timeout:.0f} s with {state.get('running')} "
                                              f"cell(s) running or queued (kernel {state.get('kernel')})"))
                break
            if time.monotonic() - last_report > 60:
                log(f"     {name}: {elapsed():.0f} s, {state.get('running')} cell(s) running or queued")
                last_report = time.monotonic()
        if state.get("kernel") in ("dead", "unknown"):
            problems.append(Problem(None, f"the kernel is {state.get('kernel')} (it died: out of memory?)"))
        # widgets render asynchronously: give each ("Loading widget...", or nothing yet) ten seconds to appear
        for _ in range(10):
            notebook = page.evaluate(JS_NOTEBOOK, name)
            loading = [p for p in problems_in_html(notebook["html"]) if "Loading widget" in p.what]
            if not loading and not widgets_not_rendered(notebook["html"], notebook["model"]):
                break
            page.wait_for_timeout(1000)
        if save_html and screenshots is not None:
            screenshots.mkdir(parents=True, exist_ok=True)
            (screenshots / (Path(name).stem + ".html")).write_text(notebook["html"] + notebook["dialogs"])
        found = problems_in_page(notebook["html"] + notebook["dialogs"], notebook["model"])
        if problems:  # timed out: the cells still queued are said once, by the time-out
            found = [p for p in found if "[*]" not in p.what and "never ran" not in p.what]
        problems = merge_problems(problems, found)
    except BrowserTestError as err:
        problems.append(Problem(None, str(err)))
    except Exception as err:  # a Playwright error or timeout: the lecture fails, the run goes on
        problems.append(Problem(None, f"{type(err).__name__}: {_short(redact(str(err), lab.token), 500)}"))
    finally:
        if screenshots is not None:
            try:
                shot, cut = _screenshot(page, name, screenshots)
                if cut:
                    note = f"screenshot cut at {SCREENSHOT_MAX_HEIGHT} px of {cut} px"
            except Exception as err:  # no screenshot is worth a note, not a failure
                note = f"no screenshot: {type(err).__name__}: {_short(str(err), 200)}"
        if page_errors:
            note = "; ".join(filter(None, [note, f"{len(page_errors)} JavaScript error(s) in the page, first: "
                                                 f"{_short(page_errors[0], 200)}"]))
        with contextlib.suppress(Exception):
            page.close()
        lab.shutdown_kernels()
    return LectureResult(name, elapsed(), problems, shot, note)


def _screenshot(page, name: str, folder: Path) -> tuple[Path, int]:
    """Screenshot the whole notebook: grow the window to the notebook's height (JupyterLab scrolls inside the
    window, so a plain full-page screenshot would show one screen). Returns the path and, where the notebook
    was taller than :data:`SCREENSHOT_MAX_HEIGHT`, its height (else 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (Path(name).stem + ".png")
    width = page.viewport_size["width"] if page.viewport_size else 1280
    try:
        height = int(page.evaluate(JS_PAGE_HEIGHT, name))
    except Exception:
        height = 0
    for _ in range(3):  # the layout changes with the window's height (wrapped lines, figures' widths)
        if height <= 0 or (page.viewport_size or {}).get("height") == min(height, SCREENSHOT_MAX_HEIGHT):
            break
        page.set_viewport_size({"width": width, "height": min(height, SCREENSHOT_MAX_HEIGHT)})
        page.wait_for_timeout(1000)  # let JupyterLab lay out again
        height = int(page.evaluate(JS_PAGE_HEIGHT, name))
    cut = height if height > SCREENSHOT_MAX_HEIGHT else 0
    page.screenshot(path=str(path), full_page=True, timeout=120_000)
    return path, cut


def run_browser_test(lectures: Sequence[Path], *, tier: str = "smoke", timeout: float = DEFAULT_TIMEOUT,
                     screenshots: Path | None = None, chromium: str | None = None, headed: bool = False,
                     save_html: bool = False, log: Callable[[str], None] = print) -> list[LectureResult]:
    """Copy the ``lectures`` (notebooks in one folder) to a temporary folder, start JupyterLab there and run
    each in Chromium. Returns one :class:`LectureResult` per lecture; raises :class:`BrowserTestError` where
    the test cannot run at all."""
    if not lectures:
        raise ValueError("lectures: expected at least one notebook, got none")
    folders = {p.resolve().parent for p in lectures}
    if len(folders) != 1:
        raise ValueError(f"lectures: expected notebooks of one folder, got {len(folders)} folders")
    chromium = chromium or find_chromium()
    if chromium is None or not playwright_available():
        raise BrowserTestError(why_not_runnable() or INSTALL_HINT)
    from playwright.sync_api import sync_playwright

    results = []
    with tempfile.TemporaryDirectory(prefix="mbrl-browser-") as tmp:
        root = Path(tmp) / "lectures"
        copy_lectures(folders.pop(), root)
        with running_lab(root, Path(tmp) / "jupyter", tier) as lab:
            log(f"JupyterLab on port {lab.port} serving a copy of the lectures ({root}), tier {tier}; "
                f"Chromium {chromium}")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, headless=not headed,
                                                     args=["--disable-gpu", "--no-first-run"])
                try:
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    for notebook in lectures:
                        result = run_lecture(context, lab, notebook.name, timeout, screenshots, log, save_html)
                        log(result.report())
                        results.append(result)
                finally:
                    browser.close()
    return results


def _install_signal_handlers() -> None:
    """SIGTERM (and SIGHUP) end the run as Ctrl-C does, so that every ``finally`` stops Jupyter."""
    def _raise(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, _raise)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mbrl_course.grading.browser",
        description="Open every lecture in JupyterLab in a real Chromium, run all cells, fail on error outputs "
                    "and widgets that do not render, save a screenshot per lecture.")
    parser.add_argument("--lectures", default=None,
                        help="which lectures, comma-separated numbers or names, e.g. 01,05 (default: all)")
    parser.add_argument("--tier", choices=TIERS, default="smoke", help="compute tier of the kernels (default smoke)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per lecture (default {DEFAULT_TIMEOUT:.0f})")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help=f"folder for the screenshots (default {DEFAULT_SCREENSHOTS}/ in the repository)")
    parser.add_argument("--lectures-dir", type=Path, default=None, help="folder of the lectures (default lectures/)")
    parser.add_argument("--headed", action="store_true", help="show the browser window (needs a display)")
    parser.add_argument("--save-html", action="store_true",
                        help="also save each notebook's rendered HTML beside its screenshot (for debugging)")
    args = parser.parse_args(argv)

    root = repo_root()
    folder = args.lectures_dir or root / "lectures"
    screenshots = args.screenshots or root / DEFAULT_SCREENSHOTS
    try:
        lectures = select_lectures(sorted(folder.glob("*.ipynb")), args.lectures)
    except ValueError as err:
        parser.error(str(err))
    if not lectures:
        parser.error(f"no notebooks in {folder}")
    reason = why_not_runnable()
    if reason:
        print(f"browser test cannot run: {reason}", file=sys.stderr)
        return 2
    _install_signal_handlers()
    try:
        results = run_browser_test(lectures, tier=args.tier, timeout=args.timeout, screenshots=screenshots,
                                   headed=args.headed, save_html=args.save_html)
    except BrowserTestError as err:
        print(f"browser test cannot run: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"interrupted ({err or 'Ctrl-C'}): JupyterLab stopped", file=sys.stderr)
        return 130
    failed = [r for r in results if not r.ok]
    total = sum(r.seconds for r in results)
    print(f"{len(results) - len(failed)}/{len(results)} lecture(s) ran cleanly in the browser "
          f"({total:.0f} s; screenshots in {screenshots})")
    for result in failed:
        print(result.report(), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())
