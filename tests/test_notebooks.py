"""Notebook conventions of the course, the notebooks themselves, and the environment doctor.

Every notebook in lectures/, solutions/ and assignments/ is committed without outputs and opens
with Colab and Binder links to its own path and the Colab set-up cell; lecture notebooks are
``lectures/NN-topic.ipynb``. Every lecture and solution notebook runs top to bottom in the smoke
budget (each in its own Python and kernel, several at once where the cores allow).

The same tests run in the student repository (``mbrl-course course export-student``), which has
no solutions/: there they check the lectures and the released assignments.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from mbrl_course import doctor
from mbrl_course.grading import links, pipeline
from mbrl_course.grading.notebooks import (
    SETUP_SOURCE,
    check_header,
    find_notebooks,
    has_outputs,
    header_cells,
    strip_outputs,
)

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


def test_colab_setup_cell_installs_on_colab_only():
    assert 'if "google.colab" in sys.modules' in SETUP_SOURCE
    assert f"git+https://github.com/{links.REPO}@{links.BRANCH}" in SETUP_SOURCE
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(SETUP_SOURCE)  # what IPython runs: valid Python
    compile(python, "<setup>", "exec")
    namespace = {}
    exec(compile(python.replace("get_ipython()", "None"), "<setup>", "exec"), namespace)  # locally: nothing happens


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
def _run(path: Path) -> tuple[int, str]:
    env = dict(os.environ)
    env["MBRL_COURSE_BUDGET"] = "smoke"
    env["MPLBACKEND"] = "Agg"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    cmd = [sys.executable, "-m", "mbrl_course.grading.notebooks", "run", str(REPO / path), "--timeout", str(CELL_TIMEOUT)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    except subprocess.TimeoutExpired:
        return 124, f"{path}: did not finish in 1200 s"
    return out.returncode, out.stdout + out.stderr


@pytest.fixture(scope="module", autouse=True)
def notebook_runs():
    """Start every runnable notebook when this file starts, as many at once as the cores allow (per
    xdist worker); they run while the other tests of this file do, and the tests below wait for them."""
    workers = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield {path: pool.submit(_run, path) for path in RUNNABLE}


@pytest.mark.parametrize("path", RUNNABLE, ids=_ids(RUNNABLE))
def test_notebook_runs_top_to_bottom_in_the_smoke_budget(notebook_runs, path):
    returncode, output = notebook_runs[path].result()
    assert returncode == 0, output[-4000:]
