"""The first cell of every notebook works where students open it: Colab (package missing) and Binder.

A wheel of this checkout is built once; a fresh virtual environment gets every dependency of the package
(links to this environment's site-packages, minus ``mbrl_course``: it is not importable there, which the
test proves) and no network (``PIP_NO_INDEX``). Each lecture's first two cells (launch links, set-up cell),
and each distinct set-up cell of the other notebooks, then run in a kernel of that environment with
``MBRL_COURSE_PIP_SPEC`` pointing at the wheel. The first run also pretends to be Colab (a stand-in
``google.colab`` module records the widget manager being enabled). Afterwards ``import mbrl_course``
works in the fresh environment and comes from the wheel.

Binder builds the image from environment.yml, apt.txt and postBuild, and starts through ``start``:
:func:`test_binder_files_agree_with_the_setup_cell` checks they fit the cell.

Cost: about 30-60 s on 2 busy cores (wheel ~5 s, venv ~2 s, ~15 kernels of ~2 s).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from mbrl_course.grading.notebooks import PIP_SPEC_ENV, SETUP_SOURCE, find_notebooks

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = find_notebooks(REPO)
LECTURES = [p for p in NOTEBOOKS if p.parts[0] == "lectures"]
KERNEL = "mbrl-course-fresh"

FAKE_COLAB = """\
import sys, types
_colab, _output = types.ModuleType("google.colab"), types.ModuleType("google.colab.output")
_output.calls = []
_output.enable_custom_widget_manager = lambda: _output.calls.append("enable_custom_widget_manager")
_colab.output = _output
sys.modules["google.colab"], sys.modules["google.colab.output"] = _colab, _output"""
"""Run before the set-up cell to stand in for Colab: ``google.colab`` is imported there."""

AFTERWARDS = """\
import json, sys, matplotlib, mbrl_course
print(json.dumps({"file": mbrl_course.__file__, "backend": matplotlib.get_backend(),
                  "colab_calls": getattr(sys.modules.get("google.colab.output"), "calls", None)}))"""
"""Run after the set-up cell: where the package came from, which backend draws, what Colab was asked."""


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout's package, built from a copy (the checkout stays untouched), offline."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "mbrl_course", src / "mbrl_course", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-q", "-w", str(dist), str(src)], check=True, capture_output=True, text=True, timeout=300)
    (found,) = dist.glob("mbrl_course-*.whl")
    return found


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict:
    """A virtual environment with every package of this one except mbrl_course, and a kernel spec for it."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    here = Path(sysconfig.get_paths()["purelib"])
    deps = root / "deps"
    deps.mkdir()
    for entry in here.iterdir():  # everything but the package under test (its editable hook included)
        if entry.name.startswith(("mbrl_course", "__editable__")) or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    python = _python(venv)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "course_deps.pth").write_text(f"{deps}\n")
    kernels = root / "kernels"
    (kernels / KERNEL).mkdir(parents=True)
    (kernels / KERNEL / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv", "language": "python"}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MPLBACKEND", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1", PYTHONNOUSERSITE="1")
    work = root / "work"
    work.mkdir()
    return {"python": python, "site": site, "kernels": kernels, "env": env, "work": work}


def _find_spec(fresh: dict) -> str:
    out = subprocess.run([str(fresh["python"]), "-c", "import importlib.util; print(importlib.util.find_spec('mbrl_course'))"],
                         capture_output=True, text=True, env=fresh["env"], cwd=fresh["work"], check=True, timeout=120)
    return out.stdout.strip()


def _execute(fresh: dict, sources: list[str], env: dict) -> list[str]:
    """Run ``sources`` as code cells in one fresh kernel of the fresh venv; the text each printed."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(fresh["kernels"])]))
    client = NotebookClient(nb, km=km, timeout=240, resources={"metadata": {"path": str(fresh["work"])}})
    client.execute(env=env)
    printed = []
    for cell in nb.cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"{cell.source[:80]}: {errors[0].ename}: {errors[0].evalue}"
        printed.append("".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream"))
    return printed


def test_every_notebook_has_the_setup_cell_to_run():
    assert LECTURES, "no lectures found"
    for path in NOTEBOOKS:
        nb = nbformat.read(REPO / path, as_version=4)
        assert nb.cells[1].cell_type == "code" and nb.cells[1].source == SETUP_SOURCE, (
            f"{path}: cell 1 is not the set-up cell; python -m mbrl_course.grading.notebooks update-headers")


def test_first_cells_install_from_the_wheel_where_the_package_is_missing(wheel, fresh):
    assert _find_spec(fresh) == "None", "mbrl_course must not be importable in the fresh venv before the test"
    env = {**fresh["env"], PIP_SPEC_ENV: str(wheel)}
    # every lecture's first two cells, and each distinct first two cells of the solutions and assignments
    runs, seen = [], set()
    for path in NOTEBOOKS:
        nb = nbformat.read(REPO / path, as_version=4)
        markdown, setup = nb.cells[0], nb.cells[1]
        assert markdown.cell_type == "markdown", f"{path}: cell 0 must be markdown (launch links)"
        if path in LECTURES or setup.source not in seen:
            seen.add(setup.source)
            runs.append((path, setup.source))

    (first, setup), *others = runs
    out = _execute(fresh, [FAKE_COLAB, setup, AFTERWARDS], env)  # Colab: package missing, google.colab there
    report = json.loads(out[2])
    assert f"installing {wheel}" in out[1], f"{first}: the set-up cell does not say it installs:\n{out[1]}"
    assert "Colab: widgets enabled" in out[1] and report["colab_calls"] == ["enable_custom_widget_manager"], first
    assert Path(report["file"]).is_relative_to(fresh["site"]), f"{first}: mbrl_course imported from {report['file']}"
    assert "inline" in report["backend"], f"{first}: figures draw with {report['backend']}"
    assert re.search(rf"mbrl_course \S+ from {re.escape(str(fresh['site']))}", out[1]), out[1]

    for path, setup in others:  # installed now: nothing to install, no Colab
        out = _execute(fresh, [setup, AFTERWARDS], env)
        report = json.loads(out[1])
        assert "installing" not in out[0] and "Colab" not in out[0], f"{path}:\n{out[0]}"
        assert re.search(rf"mbrl_course \S+ from {re.escape(str(fresh['site']))}", out[0]), f"{path}:\n{out[0]}"
        assert "inline" in report["backend"] and report["colab_calls"] is None, f"{path}: {report}"

    # the package is installed in the fresh venv, from the wheel
    assert _find_spec(fresh) != "None"
    (dist_info,) = fresh["site"].glob("mbrl_course-*.dist-info")
    assert json.loads((dist_info / "direct_url.json").read_text())["url"] == wheel.as_uri()


def test_binder_files_agree_with_the_setup_cell():
    """Binder: postBuild installs the package (with the notebook tools, ipywidgets among them), so the cell
    finds it; ``start`` picks a MuJoCo backend whose library apt.txt installs; the Python of environment.yml
    is one the package supports."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    post_build = (REPO / "postBuild").read_text()
    assert re.search(r"pip install[^\n]*(-e )?\"?\.\[course\]\"?", post_build), "postBuild must install .[course]"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("ipywidgets") for dep in project["optional-dependencies"]["course"])
    assert any(dep.startswith("ipykernel") for dep in project["optional-dependencies"]["course"])
    apt = set((REPO / "apt.txt").read_text().split())
    start = (REPO / "start").read_text()
    backend = re.search(r"MUJOCO_GL=\$\{MUJOCO_GL:-(\w+)\}", start)
    assert backend and 'exec "$@"' in start, "start must default MUJOCO_GL and exec the command it wraps"
    needs = {"osmesa": "libosmesa6", "egl": "libegl1"}[backend.group(1)]
    assert needs in apt, f"start uses MUJOCO_GL={backend.group(1)}, which needs {needs} in apt.txt"
    python = re.search(r"python=(\d+)\.(\d+)", (REPO / "environment.yml").read_text())
    low = re.match(r">=(\d+)\.(\d+)", project["requires-python"])
    assert python and low and tuple(map(int, python.groups())) >= tuple(map(int, low.groups()))
    assert os.access(REPO / "postBuild", os.X_OK) and os.access(REPO / "start", os.X_OK)
