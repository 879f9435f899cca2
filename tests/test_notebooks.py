"""Notebook conventions of the course, the notebooks themselves, and the environment doctor.

Every notebook in lectures/, solutions/ and assignments/ is committed without outputs and opens
with Colab and Binder links to its own path and the set-up cell; lecture notebooks are
``lectures/NN-topic.ipynb`` and state their run time under the title. Every lecture and solution
notebook runs top to bottom in the smoke budget (each in its own Python and kernel, several at once
where the cores allow), and the course site is rendered from the executed lectures (no second run).

The same tests run in the student repository (``mbrl-course course export-student``), which has
no solutions/: there they check the lectures and the released assignments.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from mbrl_course import doctor
from mbrl_course.grading import links, pipeline, site
from mbrl_course.grading.notebooks import (
    PIP_SPEC_ENV,
    RUN_METADATA,
    RUN_TIME_PREFIX,
    SETUP_SOURCE,
    check_header,
    check_run_time,
    find_notebooks,
    format_seconds,
    has_outputs,
    header_cells,
    run_time_line,
    stamp_run_time,
    strip_outputs,
)
from mbrl_course.grading.notebooks import _main as notebooks_main

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = find_notebooks(REPO)
RUNNABLE = [p for p in NOTEBOOKS if p.parts[0] in ("lectures", "solutions")]
CELL_TIMEOUT = 300
INSTRUCTORS_COPY = (REPO / pipeline.CONFIG_FILE).is_file()
"""This is the instructor's repository (an nbgrader course folder with solutions/), not the student one."""


def _ids(paths):
    return [p.as_posix() for p in paths]


def test_the_course_has_notebooks_to_check():
    assert any(p.parts[0] == "lectures" for p in NOTEBOOKS)
    assert any(p.parts[0] == "assignments" for p in NOTEBOOKS)
    assert any(p.parts[0] == "solutions" for p in NOTEBOOKS) == INSTRUCTORS_COPY


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_outputs_are_stripped(path):
    nb = nbformat.read(REPO / path, as_version=4)
    assert has_outputs(nb) == [], f"{path}: strip outputs (python -m mbrl_course.grading.notebooks strip {path})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_launch_links_to_its_own_path_then_setup_cell(path):
    nb = nbformat.read(REPO / path, as_version=4)
    assert check_header(nb, path, REPO) == []
    colab, binder = links.linked_paths(nb.cells[0].source)
    assert colab == binder == [path.as_posix()]
    assert (REPO / colab[0]).is_file()


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.parts[0] == "lectures"],
                         ids=_ids([p for p in NOTEBOOKS if p.parts[0] == "lectures"]))
def test_lectures_state_their_run_time_under_the_title(path):
    nb = nbformat.read(REPO / path, as_version=4)
    assert check_run_time(nb, path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_declares_the_python3_kernel(path):
    nb = nbformat.read(REPO / path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_lecture_names_follow_nn_topic():
    for path in NOTEBOOKS:
        if path.parts[0] == "lectures":
            assert len(path.parts) == 2 and re.fullmatch(r"\d\d-[a-z0-9][a-z0-9-]*\.ipynb", path.name), path


def test_solution_and_release_layout():
    for path in NOTEBOOKS:
        if path.parts[0] in ("solutions", "assignments"):
            assert len(path.parts) == 3 and path.stem == path.parts[1], f"{path}: expected <dir>/NN-name/NN-name.ipynb"
    released = {p.parts[1:] for p in NOTEBOOKS if p.parts[0] == "assignments"}
    sources = {p.parts[1:] for p in NOTEBOOKS if p.parts[0] == "solutions"}
    if INSTRUCTORS_COPY:
        assert released == sources


def test_header_helpers_and_their_checks(tmp_path):
    rel = Path("lectures/99-demo.ipynb")
    (tmp_path / "lectures").mkdir()
    nb = nbformat.v4.new_notebook(cells=[*header_cells(rel, title="# Demo"), nbformat.v4.new_code_cell("1 + 1")])
    assert check_header(nb, rel, tmp_path) == [f"{rel}: the Colab link opens {rel}, which does not exist",
                                               f"{rel}: the Binder link opens {rel}, which does not exist"]
    nbformat.write(nb, tmp_path / rel)
    assert check_header(nb, rel, tmp_path) == []
    assert links.colab_url(rel) == f"https://colab.research.google.com/github/{links.REPO}/blob/main/{rel}"
    assert links.binder_url(rel) == f"https://mybinder.org/v2/gh/{links.REPO}/main?labpath={rel}"
    assert any("expected lectures/01-other.ipynb" in p for p in check_header(nb, "lectures/01-other.ipynb", tmp_path))
    nb.cells[1].source = "import sys"
    assert any("set-up cell" in p for p in check_header(nb, rel, tmp_path))
    nb.cells[0].source = "# no links"
    assert {"lectures/99-demo.ipynb: cell 0 has no Colab link", "lectures/99-demo.ipynb: cell 0 has no Binder link"} <= set(
        check_header(nb, rel, tmp_path))
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="2")]
    nb.cells[2].execution_count = 3
    assert has_outputs(nb) == [2] and has_outputs(strip_outputs(nb)) == []
    with pytest.raises(ValueError, match="relative"):
        links.colab_url("/abs/path.ipynb")


def test_setup_cell_is_ipython_and_installs_the_configured_repository():
    """What it does in a kernel (install from a wheel, Colab's widgets, inline figures): tests/test_first_cell.py."""
    assert 'if "google.colab" in sys.modules' in SETUP_SOURCE and "enable_custom_widget_manager()" in SETUP_SOURCE
    assert f"git+https://github.com/{links.REPO}@{links.BRANCH}" in SETUP_SOURCE and PIP_SPEC_ENV in SETUP_SOURCE
    assert [link.kind for link in links.course_links(SETUP_SOURCE)] == ["install"]  # relink rewrites it
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(SETUP_SOURCE)  # what IPython runs: valid Python
    compile(python, "<setup>", "exec")
    assert "run_line_magic('pip', 'install -q \"{spec}\"')" in python
    assert "run_line_magic('matplotlib', 'inline')" in python


def test_run_time_lines_are_written_rounded_up_and_checked(tmp_path):
    assert [format_seconds(s) for s in (0.3, 38, 40.1, 59.9, 60, 61, 230, 3600, 4201)] == [
        "5 s", "40 s", "45 s", "60 s", "1 min", "2 min", "4 min", "1 h", "1 h 11 min"]
    with pytest.raises(ValueError, match="seconds"):
        format_seconds(float("nan"))
    line = run_time_line(38, 230)
    assert line == f"{RUN_TIME_PREFIX} smoke 40 s · default 4 min · full: paper-scale runs, meant for a GPU (hours; not measured)"
    rel = Path("lectures/99-demo.ipynb")
    nb = nbformat.v4.new_notebook(cells=[*header_cells(rel, title="# Demo\nA subtitle."), nbformat.v4.new_code_cell("1")])
    assert "no run-time line" in check_run_time(nb, rel)[0] and check_run_time(nb, "assignments/9/9.ipynb") == []
    assert stamp_run_time(nb, line) is True
    assert nb.cells[0].source.endswith(f"# Demo\n\n{line}\n\nA subtitle.") and check_run_time(nb, rel) == []
    assert stamp_run_time(nb, line) is False  # replaced in place, never twice
    assert stamp_run_time(nb, run_time_line(12, 3700)) is True and nb.cells[0].source.count(RUN_TIME_PREFIX) == 1
    assert "default 1 h 2 min" in nb.cells[0].source and check_run_time(nb, rel) == []
    nb.cells[0].source += "\n" + line
    assert "2 run-time line" in check_run_time(nb, rel)[0]
    assert header_cells(rel, title="# D", run_time=line)[0].source.endswith(f"# D\n\n{line}")


def test_update_headers_writes_the_setup_cell_and_the_measured_times(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("mbrl_course.grading.notebooks.repo_root", lambda: tmp_path)
    monkeypatch.chdir(tmp_path)
    for rel in ("lectures/01-a.ipynb", "lectures/02-b.ipynb", "assignments/01-x/01-x.ipynb"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        cells = header_cells(rel, title="# T")
        cells[1].source, cells[1]["id"] = "import sys  # an old set-up cell", "keep-me"
        nbformat.write(nbformat.v4.new_notebook(cells=[*cells, nbformat.v4.new_code_cell("1")]), tmp_path / rel)
    times = tmp_path / "times.json"
    times.write_text(json.dumps({"lectures": {"lectures/01-a.ipynb": {"smoke": {"seconds": 12.0, "ok": True,
                                                                                 "cpu_seconds": 6.0},
                                                                       "default": {"seconds": 200.0, "ok": True,
                                                                                   "cpu_seconds": 100.0}},
                                              "lectures/02-b.ipynb": {"smoke": {"seconds": 9.0, "ok": True}}}}))
    assert notebooks_main(["update-headers", "--times", str(times)]) == 1  # 02-b has no default time
    assert "lectures/02-b.ipynb (measured: smoke)" in capsys.readouterr().err
    for rel in ("lectures/01-a.ipynb", "lectures/02-b.ipynb", "assignments/01-x/01-x.ipynb"):
        nb = nbformat.read(tmp_path / rel, as_version=4)
        assert check_header(nb, rel, tmp_path) == [] and nb.cells[1]["id"] == "keep-me"
        assert nb.cells[2].source == "1"
    assert check_run_time(nbformat.read(tmp_path / "lectures/01-a.ipynb", as_version=4), "lectures/01-a.ipynb") == []
    assert "default 4 min" in nbformat.read(tmp_path / "lectures/01-a.ipynb", as_version=4).cells[0].source
    assert check_run_time(nbformat.read(tmp_path / "lectures/02-b.ipynb", as_version=4), "lectures/02-b.ipynb") != []
    assert notebooks_main(["check", "lectures/01-a.ipynb", "assignments/01-x/01-x.ipynb"]) == 0
    assert notebooks_main(["stamp-times", str(times), "lectures/01-a.ipynb", "--clock", "cpu"]) == 0
    first = nbformat.read(tmp_path / "lectures/01-a.ipynb", as_version=4).cells[0].source
    assert "smoke 10 s · default 2 min" in first and first.count(RUN_TIME_PREFIX) == 1


def test_the_repository_address_is_defined_once():
    for path in (REPO / "mbrl_course").rglob("*.py"):
        if path.name != "links.py":
            assert links.REPO not in path.read_text(), f"{path}: use mbrl_course.grading.links.REPO"


# ------------------------------------------------------------------------------ the doctor
def test_doctor_reports_every_check_and_never_crashes(monkeypatch):
    checks = doctor.run_doctor(skip=("render",))
    names = [c.name for c in checks]
    assert names == [name for name, _ in doctor.CHECKS if name != "render"]
    assert all(c.status in (doctor.OK, doctor.WARN, doctor.FAIL) for c in checks)
    by_name = {c.name: c for c in checks}
    assert by_name["python"].status == doctor.OK and by_name["torch"].status == doctor.OK
    assert by_name["device"].status == doctor.OK and by_name["nbgrader"].status in (doctor.OK, doctor.WARN)
    assert all(c.hint for c in checks if c.status != doctor.OK)

    def broken():
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(doctor, "CHECKS", (("python", doctor.check_python), ("broken", broken)))
    checks = doctor.run_doctor()
    assert [c.status for c in checks] == [doctor.OK, doctor.FAIL]
    report = doctor.format_report(checks)
    assert "[FAIL] broken" in report and "ZeroDivisionError: boom" in report and "-> " in report


def test_doctor_hints_for_a_bad_tier_and_a_broken_kernel(monkeypatch):
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel

    monkeypatch.setenv("MBRL_COURSE_BUDGET", "huge")
    tier = doctor.check_tier()
    assert tier.status == doctor.FAIL and "MBRL_COURSE_BUDGET" in tier.hint

    def missing(self, name):
        raise NoSuchKernel(name)

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", missing)
    kernel = doctor.check_kernel()
    assert kernel.status == doctor.FAIL and "ipykernel install --sys-prefix --name python3" in kernel.hint

    def elsewhere(self, name):
        return KernelSpec(argv=["/nonexistent/bin/python", "-m", "ipykernel_launcher"], display_name="x", language="python")

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", elsewhere)
    kernel = doctor.check_kernel()
    assert kernel.status == doctor.FAIL and "/nonexistent/bin/python" in kernel.detail

    def here(self, name):
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher"], display_name="x", language="python")

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", here)
    assert doctor.check_kernel().status == doctor.OK


def test_doctor_command_prints_a_report():
    out = subprocess.run([sys.executable, "-m", "mbrl_course.doctor", "--skip", "render", "--skip", "kernel"],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    assert out.returncode in (0, 1)
    assert "[  OK] python" in out.stdout and out.stdout.rstrip().splitlines()[-1]


# ------------------------------------------------------------------------------ running the notebooks
def _run(path: Path, out_dir: Path) -> tuple[int, str]:
    """Run ``path`` at the smoke tier as the site does (:func:`site.execute_lecture`: its own Python and kernel,
    figures as PNG outputs, the executed notebook kept in ``out_dir``); (0 or 1, what it printed on failure)."""
    run = site.execute_lecture(path, "smoke", out_dir, REPO, timeout=CELL_TIMEOUT)
    return (0 if run.ok else 1), run.error


@pytest.fixture(scope="module")
def executed_dir(tmp_path_factory) -> Path:
    """Where the smoke runs keep the executed notebooks (outputs, run time): the site is rendered from them."""
    return tmp_path_factory.mktemp("executed")


@pytest.fixture(scope="module", autouse=True)
def notebook_runs(request, executed_dir):
    """Start every runnable notebook that a selected test needs when this file starts, as many at once as the
    cores allow (per xdist worker); they run while the other tests of this file do, and the tests below wait
    for them. (``-k "not runs_top_to_bottom and not site_renders"`` runs none.)"""
    selected = {item.callspec.params["path"] for item in request.session.items
                if item.originalname == "test_notebook_runs_top_to_bottom_in_the_smoke_budget"}
    if any(item.originalname == "test_site_renders_from_the_smoke_runs" for item in request.session.items):
        selected |= set(site.lecture_paths(REPO))
    workers = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield {path: pool.submit(_run, path, executed_dir / path.parts[0]) for path in RUNNABLE if path in selected}


@pytest.mark.parametrize("path", RUNNABLE, ids=_ids(RUNNABLE))
def test_notebook_runs_top_to_bottom_in_the_smoke_budget(notebook_runs, executed_dir, path):
    returncode, output = notebook_runs[path].result()
    assert returncode == 0, output[-4000:]
    record = nbformat.read(executed_dir / path.parts[0] / path.name, as_version=4).metadata[RUN_METADATA]
    assert record["ok"] and record["tier"] == "smoke" and record["seconds"] > 0


def test_site_renders_from_the_smoke_runs(notebook_runs, executed_dir, tmp_path):
    """The course site (python -m mbrl_course.grading.site) at the smoke tier, from the runs above: a page per
    lecture with its figures and no error, an index in course order whose links resolve."""
    lectures = site.lecture_paths(REPO)
    for path in lectures:
        notebook_runs[path].result()
    runs = site.runs_from_executed(executed_dir / "lectures", REPO)
    assert [run.lecture for run in runs] == [p.as_posix() for p in lectures]
    index = site.render_site(runs, tmp_path / "_site", REPO)
    assert site.check_site(tmp_path / "_site", REPO) == []
    text = index.read_text()
    positions = [text.index(f'href="{site.PAGES}/{p.stem}.html"') for p in lectures]
    assert positions == sorted(positions)
