"""Notebook conventions of the course, in one place, for authors and for the tests.

Every notebook (``lectures/NN-topic.ipynb``, ``solutions/NN-name/NN-name.ipynb`` and their
releases in ``assignments/``) is committed with its outputs stripped and begins with

1. a markdown cell with "Open in Colab" and "Launch Binder" badges that open *that* notebook
   (:func:`header_cells` writes it, :func:`check_header` checks it) and the title; in a lecture, one
   more line under the title with its measured run time per tier (:func:`run_time_line` writes it,
   :func:`check_run_time` checks it), then
2. the set-up cell (:data:`SETUP_SOURCE`): it installs the package where it is not importable (Colab;
   ``MBRL_COURSE_PIP_SPEC`` overrides what it installs), enables ipywidgets on Colab, draws figures
   inline and prints what it found. On Binder, ``postBuild`` installed the package when the image was built.

Authors::

    from mbrl_course.grading.notebooks import header_cells
    nb.cells[:0] = header_cells("lectures/03-cem.ipynb", title="# Lecture 3: CEM")

or from a shell (``python -m mbrl_course.grading.notebooks --help``)::

    python -m mbrl_course.grading.notebooks strip lectures/*.ipynb    # strip outputs in place
    python -m mbrl_course.grading.notebooks check                     # check every notebook's header
    python -m mbrl_course.grading.notebooks relink                    # links -> the configured student repo
    python -m mbrl_course.grading.notebooks run lectures/03-cem.ipynb # run top to bottom (smoke budget)
    python -m mbrl_course.grading.notebooks run lectures/*.ipynb --out-dir /tmp/run   # keep the outputs
    python -m mbrl_course.grading.notebooks update-headers --times benchmarks/out/lecture_times.json
        # in place: every notebook's set-up cell := SETUP_SOURCE, each lecture's run-time line from the file

``benchmarks/lecture_times.py`` writes that file; ``stamp-times FILE`` writes the run-time lines alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from mbrl_course.grading.links import (
    BRANCH,
    CONFIG,
    GIT_URL,
    REPO,
    course_folder,
    course_links,
    launch_badges,
    relink,
)

NOTEBOOK_DIRS = ("lectures", "solutions", "assignments")
"""Folders (relative to the repository root) whose notebooks follow the conventions."""

COLAB_INSTALL_SPEC = f"mbrl_course @ git+{GIT_URL}@{BRANCH}"
"""What the set-up cell installs where the package is missing: the package alone, not its ``course``
extra (Colab brings its own Jupyter, and pinning ours there conflicts with it)."""

PIP_SPEC_ENV = "MBRL_COURSE_PIP_SPEC"
"""Environment variable: what the set-up cell installs instead (a fork, a branch, a local wheel)."""

SETUP_SOURCE = f"""\
# Set-up: install the course package where it is missing (Colab), enable widgets on Colab, draw figures inline.
import importlib.util, os, sys

if importlib.util.find_spec("mbrl_course") is None:
    spec = os.environ.get("{PIP_SPEC_ENV}", "{COLAB_INSTALL_SPEC}")
    print("mbrl_course is not installed here: installing", spec)
    %pip install -q "{{spec}}"
    importlib.invalidate_caches()
if "google.colab" in sys.modules:
    from google.colab import output
    output.enable_custom_widget_manager()  # sliders and play buttons
    print("Colab: widgets enabled")
%matplotlib inline
import mbrl_course
print(f"mbrl_course {{mbrl_course.__version__}} from {{os.path.dirname(mbrl_course.__file__)}}; figures inline")"""
"""Source of the set-up cell that follows the launch links (IPython: ``%pip``, ``%matplotlib``)."""

RELINK_HINT = "python -m mbrl_course.grading.notebooks relink"
"""The command that points every notebook's links at the configured student repository."""

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
"""The kernel every course notebook declares (ipykernel's ``python3``, present wherever ipykernel is)."""

RUN_TIME_PREFIX = "Run time on a 2-core CPU:"
"""How the run-time line of a lecture's first cell begins."""
FULL_TIER_NOTE = "full: paper-scale runs, meant for a GPU (hours; not measured)"
"""What the run-time line says of the ``full`` tier (see :mod:`mbrl_course.budget`)."""
RUN_TIME_HINT = ("python benchmarks/lecture_times.py, then python -m mbrl_course.grading.notebooks "
                 "stamp-times benchmarks/out/lecture_times.json")
"""The commands that measure the lectures and write their run-time lines."""
RUN_METADATA = "mbrl_course"
"""Key of an executed notebook's metadata where :func:`run_notebook` records tier, seconds and success."""


def repo_root() -> Path:
    """The repository root: the folder above the installed ``mbrl_course`` package."""
    return course_folder()


def is_lecture(path: str | Path) -> bool:
    """Whether ``path`` (relative to the repository root) is a lecture, ``lectures/NN-topic.ipynb``."""
    return Path(path).parts[:1] == ("lectures",)


def header_cells(path: str | Path, title: str | None = None, run_time: str | None = None) -> list[NotebookNode]:
    """The two cells every notebook begins with: launch badges (+ ``title``, + ``run_time`` line) and the
    set-up cell.

    ``path`` is the notebook's path relative to the repository root, e.g. ``"lectures/03-cem.ipynb"``;
    ``run_time``: a lecture's :func:`run_time_line`.
    """
    text = launch_badges(Path(path).as_posix())
    if title:
        text += "\n\n" + title.strip()
    if run_time:
        text += "\n\n" + run_time.strip()
    return [nbformat.v4.new_markdown_cell(text), nbformat.v4.new_code_cell(SETUP_SOURCE)]


def strip_outputs(nb: NotebookNode) -> NotebookNode:
    """Remove outputs and execution counts of every code cell (in place; returns ``nb``)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.get("metadata", {}).pop("execution", None)
    return nb


def has_outputs(nb: NotebookNode) -> list[int]:
    """Indices of the code cells that hold outputs or an execution count."""
    return [
        i for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def check_header(nb: NotebookNode, path: str | Path, root: str | Path | None = None) -> list[str]:
    """What is wrong with the notebook's first two cells (empty list: nothing).

    ``path``: the notebook's path relative to the repository ``root``. The first cell must be
    markdown with a Colab and a Binder link, both to ``path`` in the configured student repository
    and branch (:mod:`mbrl_course.grading.links`), and ``path`` must exist under ``root``; the second
    must be the set-up cell (:data:`SETUP_SOURCE`). A lecture's run-time line: :func:`check_run_time`.
    """
    path = Path(path).as_posix()
    root = repo_root() if root is None else Path(root)
    problems = []
    if len(nb.cells) < 2:
        return [f"{path}: expected at least 2 cells (launch links, set-up), got {len(nb.cells)}"]
    first, second = nb.cells[0], nb.cells[1]
    if first.cell_type != "markdown":
        problems.append(f"{path}: cell 0 must be markdown with the launch links, got a {first.cell_type} cell")
    else:
        found = course_links(first.source)
        for kind in ("Colab", "Binder"):
            of_kind = [link for link in found if link.kind == kind]
            if not of_kind:
                problems.append(f"{path}: cell 0 has no {kind} link")
            for link in of_kind:
                if (link.repo, link.branch) != (REPO, BRANCH):
                    problems.append(f"{path}: the {kind} link opens {link.repo}@{link.branch}, expected {REPO}@{BRANCH}")
                elif link.path != path:
                    problems.append(f"{path}: the {kind} link opens {link.path}, expected {path}")
                elif not (root / link.path).is_file():
                    problems.append(f"{path}: the {kind} link opens {link.path}, which does not exist")
    if second.cell_type != "code" or second.source.strip() != SETUP_SOURCE.strip():
        installs = [link for link in course_links(second.source) if (link.repo, link.branch) != (REPO, BRANCH)]
        if second.cell_type == "code" and installs:
            problems.append(f"{path}: cell 1 installs from {installs[0].repo}@{installs[0].branch}, expected {REPO}@{BRANCH}")
        else:
            problems.append(
                f"{path}: cell 1 must be the set-up cell "
                "(python -m mbrl_course.grading.notebooks update-headers writes it)"
            )
    return problems


# ------------------------------------------------------------------------------ run times
def format_seconds(seconds: float) -> str:
    """A measured run time, rounded up: ``"40 s"`` (to 5 s below a minute), ``"4 min"``, ``"1 h 10 min"``."""
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds: expected a finite time >= 0, got {seconds!r}")
    if seconds < 60:
        return f"{max(5, 5 * math.ceil(seconds / 5))} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h" + (f" {minutes % 60} min" if minutes % 60 else "")


def run_time_line(smoke_s: float, default_s: float) -> str:
    """The line under a lecture's title, e.g.
    ``"Run time on a 2-core CPU: smoke 40 s · default 4 min · full: paper-scale runs, meant for a GPU …"``."""
    return (f"{RUN_TIME_PREFIX} smoke {format_seconds(smoke_s)} · default {format_seconds(default_s)} · "
            f"{FULL_TIER_NOTE}")


_RUN_TIME_LINE = re.compile(rf"^{re.escape(RUN_TIME_PREFIX)} smoke \d[^·\n]* · default \d[^·\n]* · full: .+$",
                            re.MULTILINE)


def check_run_time(nb: NotebookNode, path: str | Path) -> list[str]:
    """A lecture's first cell must state its run time per tier in one line (:func:`run_time_line`);
    other notebooks need not. Empty list: nothing wrong."""
    path = Path(path).as_posix()
    if not is_lecture(path) or not nb.cells:
        return []
    found = _RUN_TIME_LINE.findall(nb.cells[0].source) if nb.cells[0].cell_type == "markdown" else []
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        return [f"{path}: cell 0 has {what} run-time line ('{RUN_TIME_PREFIX} smoke … · default … · full: …'); "
                f"measure and write it: {RUN_TIME_HINT}"]
    return []


def stamp_run_time(nb: NotebookNode, line: str) -> bool:
    """Put the run-time ``line`` into the first cell (in place): it replaces an existing run-time line,
    else it goes under the title (the first heading), else at the end. Returns whether anything changed."""
    cell = nb.cells[0]
    lines = cell.source.split("\n")
    old = [i for i, text in enumerate(lines) if text.startswith(RUN_TIME_PREFIX)]
    if old:
        lines[old[0]] = line
    else:
        heading = next((i for i, text in enumerate(lines) if text.lstrip().startswith("#")), None)
        at = len(lines) if heading is None else heading + 1
        lines[at:at] = ["", line] + ([""] if at < len(lines) and lines[at].strip() else [])
    source = "\n".join(lines)
    changed = source != cell.source
    cell.source = source
    return changed


def read_times(path: str | Path, clock: str = "wall") -> dict[str, dict[str, float]]:
    """``{lecture path: {tier: seconds}}`` of the successful runs in ``benchmarks/lecture_times.py``'s JSON
    file; ``clock``: ``"wall"`` (``seconds``) or ``"cpu"`` (the kernel's ``cpu_seconds``)."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"clock: expected 'wall' or 'cpu', got {clock!r}")
    key = "seconds" if clock == "wall" else "cpu_seconds"
    data = json.loads(Path(path).read_text())
    lectures = data.get("lectures") if isinstance(data, dict) else None
    if not isinstance(lectures, dict):
        raise ValueError(f"{path}: expected a JSON object with a 'lectures' table (benchmarks/lecture_times.py "
                         "writes it)")
    return {rel: {tier: float(entry[key]) for tier, entry in tiers.items()
                  if entry.get("ok", True) and entry.get(key) is not None}
            for rel, tiers in lectures.items()}


def set_setup_cell(nb: NotebookNode) -> bool:
    """Make cell 1 the set-up cell (:data:`SETUP_SOURCE`), keeping its id; in place. Returns whether it changed."""
    cell = nb.cells[1]
    if cell.cell_type == "code" and cell.source == SETUP_SOURCE:
        return False
    new = nbformat.v4.new_code_cell(SETUP_SOURCE)
    if cell.get("id"):
        new["id"] = cell["id"]
    nb.cells[1] = new
    return True


def relink_notebook(nb: NotebookNode, path: str | Path) -> bool:
    """Point the launch links (cell 0) and the Colab install (cell 1) of ``nb`` at the configured student
    repository and branch, the links at ``path`` (the notebook's path relative to the repository root).
    In place; returns whether anything changed."""
    changed = False
    for index, cell in enumerate(nb.cells[:2]):
        source = relink(cell.source, Path(path).as_posix() if index == 0 else None)
        if source != cell.source:
            cell.source, changed = source, True
    return changed


def find_notebooks(root: str | Path | None = None, dirs: tuple[str, ...] = NOTEBOOK_DIRS) -> list[Path]:
    """Every ``*.ipynb`` under ``dirs`` of ``root`` (checkpoints excluded), as paths relative to ``root``."""
    root = repo_root() if root is None else Path(root)
    found = []
    for folder in dirs:
        for nb_path in sorted((root / folder).rglob("*.ipynb")):
            rel = nb_path.relative_to(root)
            if ".ipynb_checkpoints" not in rel.parts:
                found.append(rel)
    return found


# ------------------------------------------------------------------------------ running
class NotebookError(RuntimeError):
    """A notebook cell failed while running top to bottom; ``nb`` holds the outputs up to the failure."""

    def __init__(self, message: str, nb: NotebookNode | None = None):
        super().__init__(message)
        self.nb = nb


def run_notebook(path: str | Path, timeout: int = 300, kernel_name: str | None = None,
                 cwd: str | Path | None = None, store_widget_state: bool = True) -> NotebookNode:
    """Run the notebook at ``path`` top to bottom in a fresh kernel and return it with its outputs.

    The kernel inherits this process's environment (set ``MBRL_COURSE_BUDGET=smoke`` for tests) and
    runs in ``cwd`` (default: the notebook's folder). ``timeout``: seconds per cell.
    ``store_widget_state``: keep ipywidgets' state in the notebook's metadata (an HTML export shows it).
    The notebook's ``metadata["mbrl_course"]`` records ``tier``, ``seconds`` (kernel start to last cell,
    wall clock), ``cpu_seconds`` (the CPU time the kernel used, where the OS reports it: on a busy
    machine a better estimate than ``seconds`` of the wall time on an idle one) and ``ok``.
    Raises :class:`NotebookError` naming the failing cell.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from mbrl_course.budget import budget

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name or nb.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(Path(cwd).resolve() if cwd else path.parent)}},
        store_widget_state=store_widget_state,
    )
    nb.metadata[RUN_METADATA] = {"tier": budget(), "seconds": None, "cpu_seconds": None, "ok": False}
    start, cpu_start = time.perf_counter(), _children_cpu_seconds()

    def record(**more) -> None:
        cpu = _children_cpu_seconds()  # the kernel has exited and was waited for: its CPU time is counted
        nb.metadata[RUN_METADATA].update(
            seconds=round(time.perf_counter() - start, 1),
            cpu_seconds=None if cpu is None or cpu_start is None else round(cpu - cpu_start, 1), **more)

    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        record()
        index = next(
            (i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and any(o.get("output_type") == "error" for o in cell.get("outputs", []))),
            None,
        )
        where = f"cell {index}" if index is not None else "a cell"
        raise NotebookError(f"{path.name}: {where} failed:\n{err}", nb) from None
    record(ok=True)
    return nb


def _children_cpu_seconds() -> float | None:
    """User + system CPU seconds of this process's finished, waited-for children (``None`` off Unix)."""
    try:
        import resource
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------ command line
def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mbrl_course.grading.notebooks",
                                     description="Course notebook conventions: strip, check, run, headers.")
    sub = parser.add_subparsers(dest="command", required=True)
    strip = sub.add_parser("strip", help="strip outputs in place")
    strip.add_argument("paths", nargs="*", type=Path)
    check = sub.add_parser("check", help="check launch links, set-up cell, run-time lines and stripped outputs")
    check.add_argument("paths", nargs="*", type=Path, help="default: every notebook of the course")
    rel = sub.add_parser("relink", help="point launch links and the Colab install at the configured student "
                                        "repository ([tool.mbrl_course] of pyproject.toml), in place")
    rel.add_argument("paths", nargs="*", type=Path, help="default: every notebook of the course")
    run = sub.add_parser("run", help="run notebooks top to bottom (smoke budget unless MBRL_COURSE_BUDGET is set)")
    run.add_argument("paths", nargs="+", type=Path)
    run.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    run.add_argument("--out-dir", type=Path, default=None,
                     help="write each executed notebook (outputs, widget state, run time in its metadata) "
                          "there under its own name, also when it fails; the source stays untouched")
    headers = sub.add_parser("update-headers", help="in place: cell 1 := the set-up cell in every notebook, "
                                                    "and with --times the run-time line of every lecture")
    headers.add_argument("paths", nargs="*", type=Path, help="default: every notebook of the course")
    headers.add_argument("--times", type=Path, default=None, help="benchmarks/out/lecture_times.json")
    headers.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                         help="which measured time to state: wall clock (default) or the kernel's CPU time")
    stamp = sub.add_parser("stamp-times", help="in place: write each lecture's run-time line from the JSON "
                                               "file of benchmarks/lecture_times.py")
    stamp.add_argument("times", type=Path)
    stamp.add_argument("paths", nargs="*", type=Path, help="default: every lecture")
    stamp.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                       help="which measured time to state: wall clock (default) or the kernel's CPU time")
    args = parser.parse_args(argv)

    if args.command == "strip":
        for nb_path in args.paths:
            nb = nbformat.read(nb_path, as_version=4)
            nbformat.write(strip_outputs(nb), nb_path)
            print(f"stripped {nb_path}")
        return 0
    if args.command == "run":
        return _run_command(args.paths, args.timeout, args.out_dir)
    root = repo_root()
    paths = [p.resolve().relative_to(root) for p in args.paths] if args.paths else find_notebooks(root)
    if args.command in ("update-headers", "stamp-times"):
        return _update_headers(root, paths, setup=args.command == "update-headers", times=args.times,
                               clock=args.clock)
    where = f"{REPO}@{BRANCH} (from {CONFIG.origin})"
    if args.command == "relink":
        changed = 0
        for rel in paths:
            nb = nbformat.read(root / rel, as_version=4)
            if relink_notebook(nb, rel):
                nbformat.write(nb, root / rel)
                changed += 1
                print(f"relinked {rel}")
        print(f"{len(paths)} notebook(s) open {where}; {changed} rewritten")
        return 0
    problems = []
    for rel in paths:
        nb = nbformat.read(root / rel, as_version=4)
        problems += check_header(nb, rel, root)
        problems += check_run_time(nb, rel)
        problems += [f"{rel}: cell {i} has outputs; strip them" for i in has_outputs(nb)]
    print("\n".join(problems) or f"{len(paths)} notebook(s): all fine (links open {where})")
    if any(f"expected {REPO}@{BRANCH}" in problem for problem in problems):
        print(f"links must open {where}; to rewrite them: {RELINK_HINT}")
    return 1 if problems else 0


def _run_command(paths: list[Path], timeout: int, out_dir: Path | None) -> int:
    os.environ.setdefault("MBRL_COURSE_BUDGET", "smoke")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for nb_path in paths:
        try:
            nb = run_notebook(nb_path, timeout=timeout)
            print(f"ok {nb_path} ({nb.metadata[RUN_METADATA]['seconds']:.1f} s, {nb.metadata[RUN_METADATA]['tier']})")
        except NotebookError as err:
            failed += 1
            nb = err.nb
            print(err, file=sys.stderr)
        if out_dir is not None and nb is not None:
            nbformat.write(nb, out_dir / Path(nb_path).name)
    return 1 if failed else 0


def _update_headers(root: Path, paths: list[Path], setup: bool, times: Path | None, clock: str = "wall") -> int:
    measured = read_times(times, clock) if times is not None else {}
    missing = []
    for rel in paths:
        nb = nbformat.read(root / rel, as_version=4)
        changed = set_setup_cell(nb) if setup else False
        if times is not None and is_lecture(rel):
            tiers = measured.get(rel.as_posix(), {})
            if {"smoke", "default"} <= tiers.keys():
                changed |= stamp_run_time(nb, run_time_line(tiers["smoke"], tiers["default"]))
            else:
                missing.append(f"{rel} (measured: {', '.join(sorted(tiers)) or 'nothing'})")
        if changed:
            nbformat.write(nb, root / rel)
            print(f"updated {rel}")
    if missing:
        print(f"no smoke and default time in {times} for: " + "; ".join(missing), file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(_main())
