"""The real-browser test of the lectures (mbrl_course/grading/browser.py, `make browser-test`).

Without a browser: finding Chromium, the lecture selection, the Jupyter server's port, token, command and
environment, the clean stop of a process group, and the detection of what a student would see go wrong on a
saved page (HTML captured from JupyterLab 4 with ipywidgets 8) and notebook model.

With a Chromium and Playwright (skipped otherwise, saying how to install them): JupyterLab itself refuses
a request without the token and stops with its kernels; three small notebooks (clean, failing, broken
widgets) run in the browser and get exactly the problems they hold; and a few lectures run cleanly (all of
them: `make browser-test`).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

from mbrl_course.grading import browser
from mbrl_course.grading.browser import (
    BrowserTestError,
    Problem,
    find_chromium,
    free_port,
    lab_command,
    lab_environment,
    lab_url,
    merge_problems,
    new_token,
    problems_in_html,
    problems_in_notebook,
    problems_in_page,
    redact,
    select_lectures,
    stop_process_group,
    why_not_runnable,
    widgets_not_rendered,
    write_lab_settings,
)

REPO = Path(__file__).resolve().parents[1]
LECTURES = sorted((REPO / "lectures").glob("*.ipynb"))
SUITE_LECTURES = "02"
"""Lectures the suite runs in the browser: 02 shows sliders, a Play widget, progress bars and figures
(25-80 s here, with the machine idle or loaded; all nine take 4-11 min: `make browser-test`)."""

SKIP_REASON = browser.why_not_runnable()
needs_browser = pytest.mark.skipif(
    SKIP_REASON is not None,
    reason=f"browser test skipped: {SKIP_REASON}".replace("\n", " "),
)


# ----------------------------------------------------------------------------------------------------------
# Finding the browser


def _which(found: dict[str, str]):
    return lambda name: found.get(name)


def test_finds_the_first_chromium_on_the_path_in_order():
    assert find_chromium({}, _which({"google-chrome": "/opt/chrome", "chromium-browser": "/usr/bin/cb"})) == "/usr/bin/cb"
    assert find_chromium({}, _which({"google-chrome-stable": "/opt/gcs"})) == "/opt/gcs"
    assert find_chromium({}, _which({})) is None


def test_the_environment_variable_wins_and_a_wrong_one_is_an_error(tmp_path):
    exe = tmp_path / "my-chromium"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    on_path = _which({"chromium": "/usr/bin/chromium", "chrome-beta": "/opt/beta"})
    assert find_chromium({"MBRL_COURSE_CHROMIUM": str(exe)}, on_path) == str(exe)
    assert find_chromium({"MBRL_COURSE_CHROMIUM": "chrome-beta"}, on_path) == "/opt/beta"
    with pytest.raises(BrowserTestError, match="MBRL_COURSE_CHROMIUM"):
        find_chromium({"MBRL_COURSE_CHROMIUM": str(tmp_path / "missing")}, on_path)
    not_executable = tmp_path / "plain-file"
    not_executable.write_text("")
    with pytest.raises(BrowserTestError, match="not an executable"):
        find_chromium({"MBRL_COURSE_CHROMIUM": str(not_executable)}, on_path)


def test_without_a_chromium_the_reason_says_how_to_install_one():
    reason = why_not_runnable({}, _which({}))
    assert reason is not None and "no Chromium found" in reason
    assert "apt-get install chromium" in reason and "pip install playwright" in reason
    assert "make browser-test" in reason
    with_chromium = why_not_runnable({}, _which({"chromium": "/usr/bin/chromium"}))
    assert with_chromium is None or "no Chromium" not in with_chromium  # only Playwright can be missing then


# ----------------------------------------------------------------------------------------------------------
# Port, token, command, environment


def test_free_port_can_be_bound_and_tokens_are_random():
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))  # nothing holds it
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20
    assert all(len(t) == 48 and int(t, 16) >= 0 for t in tokens)


def test_lab_url_carries_the_token_and_quotes_the_path():
    url = lab_url(8899, "abc123", "my lecture #1.ipynb")
    assert url.startswith("http://127.0.0.1:8899/lab/tree/my%20lecture%20%231.ipynb?")
    assert "token=abc123" in url and "reset" in url
    assert lab_url(8899, "abc123").startswith("http://127.0.0.1:8899/lab?")
    assert redact(f"failed to open {url}", "abc123") == f"failed to open {url.replace('abc123', '***')}"
    assert "abc123" not in redact(url, "abc123")


def test_lab_command_binds_localhost_on_that_port_only_with_the_token(tmp_path):
    command = lab_command(tmp_path, 8899, "tok", python="/venv/bin/python")
    assert command[:3] == ["/venv/bin/python", "-m", "jupyterlab"]
    assert {"--ServerApp.ip=127.0.0.1", "--ServerApp.port=8899", "--ServerApp.port_retries=0",
            "--ServerApp.token=tok", f"--ServerApp.root_dir={tmp_path}", "--no-browser",
            "--LabApp.expose_app_in_browser=True"} <= set(command)
    assert ("--allow-root" in command) == (os.geteuid() == 0)


def test_lab_environment_sets_the_tier_and_keeps_the_users_jupyter_folders_out(tmp_path):
    env = lab_environment("default", tmp_path, base={"PATH": "/bin", "OMP_NUM_THREADS": "4",
                                                     "JUPYTERLAB_SETTINGS_DIR": "/home/me/.jupyter/lab"})
    assert env["MBRL_COURSE_BUDGET"] == "default" and env["PATH"] == "/bin"
    assert env["OMP_NUM_THREADS"] == "4"  # the caller's choice is kept
    assert lab_environment("smoke", tmp_path, base={})["OMP_NUM_THREADS"] == "1"
    for name in ("JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR"):
        assert Path(env[name]).parent == tmp_path
    with pytest.raises(ValueError, match="tier must be one of smoke, default, full, got 'fast'"):
        lab_environment("fast", tmp_path, base={})


def test_lab_settings_keep_every_cell_in_the_page(tmp_path):
    write_lab_settings(tmp_path)
    tracker = json.loads((tmp_path / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings").read_text())
    assert tracker == {"windowingMode": "none", "scrollPastEnd": False}


def test_stop_process_group_stops_the_children_too():
    process = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    child = int(process.stdout.readline())
    stop_process_group(process, grace=5)
    assert process.poll() is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)
    stop_process_group(process, grace=1)  # twice is harmless


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            return stat_file.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


# ----------------------------------------------------------------------------------------------------------
# Choosing the lectures


def test_select_lectures_by_number_or_name_in_course_order():
    available = [Path(f"/l/{n}") for n in ("05-ilqr-gps.ipynb", "01-mbrl-templates.ipynb", "02-planning.ipynb")]
    assert [p.name for p in select_lectures(available, None)] == [
        "01-mbrl-templates.ipynb", "02-planning.ipynb", "05-ilqr-gps.ipynb"]
    assert select_lectures(available, "all") == select_lectures(available, None)
    assert [p.name for p in select_lectures(available, "05,01")] == ["01-mbrl-templates.ipynb", "05-ilqr-gps.ipynb"]
    assert [p.name for p in select_lectures(available, "5, 02-planning")] == ["02-planning.ipynb",
                                                                              "05-ilqr-gps.ipynb"]
    with pytest.raises(ValueError, match=r"--lectures: 07, nope matches no lecture \(have: 01-mbrl-templates"):
        select_lectures(available, "01,07,nope")


def test_the_course_has_lectures_to_open():
    assert [p.name[:2] for p in LECTURES] == [f"{i:02d}" for i in range(1, len(LECTURES) + 1)]
    assert select_lectures(LECTURES, SUITE_LECTURES)


# ----------------------------------------------------------------------------------------------------------
# What a student would see go wrong, on a saved page
#
# The cells below are JupyterLab 4.6 / ipywidgets 8.1 markup captured from real runs (long attributes cut):
# 0 markdown; 1 a warning on stderr (fine); 2 a slider that rendered (fine); 3 a figure (fine);
# 4 a traceback; 5 a SyntaxError (no "Traceback" line); 6 a widget whose model is not found;
# 7 a widget printed as text; 8 a cell still queued; then the "Kernel Restarting" dialog.

_CELL = '<div class="lm-Widget jp-Cell jp-CodeCell jp-Notebook-cell"><div class="jp-InputArea">' \
        '<div class="lm-Widget jp-InputPrompt jp-InputArea-prompt">{prompt}</div></div>' \
        '<div class="lm-Widget jp-OutputArea jp-Cell-outputArea">{outputs}</div></div>'
_STDERR = '<div class="lm-Widget jp-RenderedText jp-mod-trusted jp-OutputArea-output" ' \
          'data-mime-type="application/vnd.jupyter.stderr"><pre>{}</pre></div>'

SAVED_CELLS = [
    '<div class="lm-Widget jp-Cell jp-MarkdownCell jp-Notebook-cell jp-mod-rendered"><h1>Lecture</h1></div>',
    _CELL.format(prompt="[1]:", outputs=_STDERR.format(
        "<a>/tmp/ipykernel_18501/3145049692.py:2</a>: UserWarning: just a warning\n"
        "  warnings.warn('just a warning')\nto stderr\n")),
    _CELL.format(prompt="[2]:", outputs=(
        '<div class="lm-Widget lm-Panel jp-OutputArea-output"><div class="lm-Widget jupyter-widgets '
        'widget-inline-hbox widget-slider widget-hslider"><label class="widget-label" style="display: none;">'
        '</label><div class="slider-container"><div class="slider noUi-target"></div></div>'
        '<div class="widget-readout">3</div></div></div>')),
    _CELL.format(prompt="[3]:", outputs=(
        '<div class="lm-Widget jp-RenderedImage jp-mod-trusted jp-OutputArea-output" data-mime-type="image/png">'
        '<img src="data:image/png;base64,iVBORw0KGgo="></div>')),
    _CELL.format(prompt="[4]:", outputs=_STDERR.format(
        '<span class="ansi-red-fg">---------------------------------------------------------------------------'
        '</span>\n<span class="ansi-red-fg">ValueError</span>                                Traceback (most '
        'recent call last)\n<span class="ansi-cyan-fg">Cell</span><span class="ansi-cyan-fg"> </span>'
        '<span class="ansi-green-fg">In[4]</span><span class="ansi-green-fg">, line 1</span>\n'
        '<span class="ansi-green-fg">----&gt; </span><span class="ansi-green-fg">1</span> '
        "<span>raise</span> ValueError('bad thing')\n\n"
        '<span class="ansi-red-fg">ValueError</span>: bad thing')),
    _CELL.format(prompt="[5]:", outputs=_STDERR.format(
        '  <span class="ansi-cyan-fg">Cell</span><span class="ansi-cyan-fg"> </span><span class="ansi-green-fg">'
        'In[5]</span><span class="ansi-green-fg">, line 1</span>\n<span class="ansi-red-fg">    </span>'
        '<span class="ansi-red-fg">x = (1,</span>\n           ^\n<span class="ansi-red-fg">SyntaxError</span>'
        '<span class="ansi-red-fg">:</span> incomplete input\n')),
    _CELL.format(prompt="[6]:", outputs=(
        '<div class="lm-Widget lm-Panel jp-OutputArea-output jupyter-widgets">'
        'Error displaying widget: model not found</div>')),
    _CELL.format(prompt="[7]:", outputs=(
        '<div class="lm-Widget jp-RenderedText jp-mod-trusted jp-OutputArea-output" data-mime-type="text/plain">'
        '<pre>IntSlider(value=3, description="x")</pre></div>')),
    _CELL.format(prompt="[*]:", outputs=""),
]
DIALOG = (
    '<div class="lm-Widget jp-Dialog"><div class="lm-Widget jp-Dialog-content"><div class="jp-Dialog-header">'
    'Kernel Restarting</div><div class="jp-Dialog-body">The kernel for 01-mbrl-templates.ipynb appears to have '
    'died. It will restart automatically.</div></div></div>'
)


def _page(cells: list[str], dialog: str = "") -> str:
    return '<div class="lm-Widget jp-Notebook jp-NotebookPanel-notebook">' + "".join(cells) + "</div>" + dialog


SAVED_PAGE = _page(SAVED_CELLS, DIALOG)


def test_the_saved_page_gets_exactly_its_problems():
    found = {(p.cell, p.what) for p in problems_in_html(SAVED_PAGE)}
    assert found == {
        (4, "error output: ValueError: bad thing"),
        (5, "error output: SyntaxError: incomplete input"),
        (6, "widget does not render: 'Error displaying widget: model not found'"),
        (7, "widget shown as text (no widget manager): 'IntSlider(value=3, description=\"x\")'"),
        (8, "still running or queued ([*]) when the run was over"),
        (None, "dialog open: 'Kernel Restarting The kernel for 01-mbrl-templates.ipynb appears to have died. "
               "It will restart automatically.'"),
    }


def test_a_clean_page_has_no_problems_and_loading_widgets_are_caught():
    assert problems_in_html(_page(SAVED_CELLS[:4])) == []  # a warning, a slider and a figure are fine
    loading = _CELL.format(prompt="[1]:", outputs='<div class="lm-Widget lm-Panel jp-OutputArea-output">'
                                                  'Loading widget...</div>')
    assert [p.what for p in problems_in_html(_page([loading]))] == ["widget does not render: 'Loading widget...'"]


def _widget_output(model_id: str = "0123"):
    return nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": model_id, "version_major": 2, "version_minor": 0},
        "text/plain": "IntSlider(value=3)"})


def _notebook(*cells) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return json.loads(nbformat.writes(nb))


def test_the_notebook_model_gives_errors_and_cells_that_never_ran():
    error = nbformat.v4.new_code_cell("raise ValueError('bad')", execution_count=2, outputs=[
        nbformat.v4.new_output("error", ename="ValueError", evalue="bad", traceback=["..."])])
    nb = _notebook(nbformat.v4.new_markdown_cell("# title"),
                   nbformat.v4.new_code_cell("x = 1", execution_count=1), error,
                   nbformat.v4.new_code_cell("print(x)"), nbformat.v4.new_code_cell("  \n"))
    assert [(p.cell, p.what) for p in problems_in_notebook(nb)] == [
        (2, "error output: ValueError: bad"), (3, "never ran (no execution count)")]


def test_a_widget_output_without_a_rendered_widget_is_caught():
    nb = _notebook(nbformat.v4.new_markdown_cell("# title"),
                   nbformat.v4.new_code_cell("w", execution_count=1, outputs=[_widget_output()]),
                   nbformat.v4.new_code_cell("w", execution_count=2, outputs=[_widget_output()]))
    html = _page(SAVED_CELLS[:3])  # cell 1 holds a warning, not a widget; cell 2 a rendered slider
    assert [(p.cell, p.what) for p in widgets_not_rendered(html, nb)] == [
        (1, "widget does not render: 1 widget output(s), 0 shown")]
    closed = _CELL.format(prompt="[1]:", outputs='<div class="lm-Widget lm-Panel jp-OutputArea-output '
                                                 'lm-mod-hidden"></div>')  # a tqdm bar closed by the kernel
    assert widgets_not_rendered(_page([SAVED_CELLS[0], closed, SAVED_CELLS[2]]), nb) == []
    merged = problems_in_page(html, nb)
    assert Problem(1, "widget does not render: 1 widget output(s), 0 shown") in merged
    assert all(p.cell != 2 or "widget" not in p.what for p in merged)


def test_merge_keeps_one_message_per_cell_and_kind_in_cell_order():
    merged = merge_problems([Problem(3, "error output: ValueError: bad"), Problem(None, "timed out")],
                            [Problem(3, "error output: ValueError"), Problem(1, "never ran (no execution count)")])
    assert [str(p) for p in merged] == ["cell 1: never ran (no execution count)",
                                        "cell 3: error output: ValueError: bad", "page: timed out"]


# ----------------------------------------------------------------------------------------------------------
# In JupyterLab and Chromium (skipped where none is installed)


@needs_browser
@pytest.mark.slow
def test_jupyterlab_wants_the_token_and_stops_with_its_kernels(tmp_path):
    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir()
    with pytest.raises(RuntimeError, match="leaving the block"), browser.running_lab(root, home) as lab:
        lab.api("status")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{lab.port}/api/sessions", timeout=10)
        assert refused.value.code == 403
        assert lab.api("kernels", method="POST")["name"] == "python3"
        deadline = time.monotonic() + 60
        while not browser.kernel_pids(home / "runtime") and time.monotonic() < deadline:
            time.sleep(0.2)
        kernels = browser.kernel_pids(home / "runtime")
        assert len(kernels) == 1
        process = lab.process
        raise RuntimeError("leaving the block")
    assert process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # no process of the server's group is left
    assert not _alive(kernels[0])  # nor the kernel (a process group of its own)


PROBES = {
    "01-clean.ipynb": ["import warnings, sys\nwarnings.warn('only a warning')\nprint('to stderr', file=sys.stderr)",
                       "import ipywidgets as w\nw.VBox([w.IntSlider(value=3), w.HTML('<b>hi</b>')])",
                       "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 2, 3]);"],
    "02-fails.ipynb": ["x = 1", "raise ValueError('bad thing')", "print('never')"],
    "03-widgets.ipynb": [
        "from IPython.display import display\n"
        "display({'application/vnd.jupyter.widget-view+json': {'model_id': 'f00', 'version_major': 2, "
        "'version_minor': 0}, 'text/plain': 'IntSlider(value=3)'}, raw=True)",
        "display({'text/plain': 'IntSlider(value=3, description=\"x\")'}, raw=True)"],
}


@needs_browser
@pytest.mark.slow
def test_the_browser_finds_exactly_the_problems_of_three_small_notebooks(tmp_path):
    for name, sources in PROBES.items():
        nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                               "language": "python"}})
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}")] + [nbformat.v4.new_code_cell(s) for s in sources]
        nbformat.write(nb, tmp_path / name)
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")}
    results = browser.run_browser_test(sorted(tmp_path.glob("*.ipynb")), screenshots=tmp_path / "shots",
                                       timeout=300, log=lambda _: None)
    found = {r.name: [str(p) for p in r.problems] for r in results}
    assert found == {
        "01-clean.ipynb": [],
        "02-fails.ipynb": ["cell 2: error output: ValueError: bad thing", "cell 3: never ran (no execution count)"],
        "03-widgets.ipynb": ["cell 1: widget does not render: 'Error displaying widget: model not found'",
                             "cell 2: widget shown as text (no widget manager): 'IntSlider(value=3, description=\"x\")'"],
    }
    for result in results:
        assert result.screenshot == tmp_path / "shots" / (Path(result.name).stem + ".png")
        assert result.screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")} == before  # the run works on copies


@needs_browser
@pytest.mark.slow
def test_lectures_run_cleanly_in_the_browser(tmp_path):
    """The suite's share of `make browser-test` (which runs every lecture)."""
    lectures = select_lectures(LECTURES, SUITE_LECTURES)
    before = {p: p.read_bytes() for p in lectures}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "mbrl_course.grading.browser", "--lectures", SUITE_LECTURES,
                           "--screenshots", str(tmp_path)], env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [p.stem + ".png" for p in lectures]
    assert {p: p.read_bytes() for p in lectures} == before  # the repository's notebooks are not touched
