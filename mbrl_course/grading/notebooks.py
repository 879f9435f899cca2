"""Notebook conventions of the course, in one place, for authors and for the tests.

Every notebook (``lectures/NN-topic.ipynb``, ``solutions/NN-name/NN-name.ipynb`` and their
releases in ``assignments/``) is committed with its outputs stripped and begins with

1. a markdown cell with "Open in Colab" and "Launch Binder" badges that open *that* notebook
   (:func:`header_cells` writes it, :func:`check_header` checks it), then
2. a set-up cell that installs the package on Colab and does nothing anywhere else.

Authors::

    from mbrl_course.grading.notebooks import header_cells
    nb.cells[:0] = header_cells("lectures/03-cem.ipynb", title="# Lecture 3: CEM")

or from a shell (``python -m mbrl_course.grading.notebooks --help``)::

    python -m mbrl_course.grading.notebooks strip lectures/*.ipynb    # strip outputs in place
    python -m mbrl_course.grading.notebooks check                     # check every notebook's header
    python -m mbrl_course.grading.notebooks relink                    # links -> the configured student repo
    python -m mbrl_course.grading.notebooks run lectures/03-cem.ipynb # run top to bottom (smoke budget)
"""

from __future__ import annotations

import argparse
import os
import sys
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
"""What the set-up cell installs on Colab: the package alone, not its ``course`` extra (Colab brings its own
Jupyter, and pinning ours there conflicts with it)."""

SETUP_SOURCE = (
    "import sys\n"
    "\n"
    "if \"google.colab\" in sys.modules:  # on Colab: install the course package; locally: nothing to do\n"
    f"    %pip install -q \"{COLAB_INSTALL_SPEC}\""
)
"""Source of the set-up cell that follows the launch links."""

RELINK_HINT = "python -m mbrl_course.grading.notebooks relink"
"""The command that points every notebook's links at the configured student repository."""

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
"""The kernel every course notebook declares (ipykernel's ``python3``, present wherever ipykernel is)."""


def repo_root() -> Path:
    """The repository root: the folder above the installed ``mbrl_course`` package."""
    return course_folder()


def header_cells(path: str | Path, title: str | None = None) -> list[NotebookNode]:
    """The two cells every notebook begins with: launch badges (+ ``title``) and the Colab set-up cell.

    ``path`` is the notebook's path relative to the repository root, e.g. ``"lectures/03-cem.ipynb"``.
    """
    text = launch_badges(Path(path).as_posix())
    if title:
        text += "\n\n" + title.strip()
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
    must be the Colab set-up cell (:data:`SETUP_SOURCE`).
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
                f"{path}: cell 1 must be the Colab set-up cell "
                "(mbrl_course.grading.notebooks.header_cells writes it)"
            )
    return problems


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


class NotebookError(RuntimeError):
    """A notebook cell failed while running top to bottom."""


def run_notebook(path: str | Path, timeout: int = 300, kernel_name: str | None = None) -> NotebookNode:
    """Run the notebook at ``path`` top to bottom in a fresh kernel (its folder as working directory).

    The kernel inherits this process's environment (set ``MBRL_COURSE_BUDGET=smoke`` for tests).
    ``timeout``: seconds per cell. Raises :class:`NotebookError` naming the failing cell.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name or nb.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        index = next(
            (i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and any(o.get("output_type") == "error" for o in cell.get("outputs", []))),
            None,
        )
        where = f"cell {index}" if index is not None else "a cell"
        raise NotebookError(f"{path.name}: {where} failed:\n{err}") from None
    return nb


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mbrl_course.grading.notebooks",
                                     description="Course notebook conventions: strip, check, run.")
    sub = parser.add_subparsers(dest="command", required=True)
    strip = sub.add_parser("strip", help="strip outputs in place")
    strip.add_argument("paths", nargs="*", type=Path)
    check = sub.add_parser("check", help="check launch links, set-up cell and stripped outputs")
    check.add_argument("paths", nargs="*", type=Path, help="default: every notebook of the course")
    rel = sub.add_parser("relink", help="point launch links and the Colab install at the configured student "
                                        "repository ([tool.mbrl_course] of pyproject.toml), in place")
    rel.add_argument("paths", nargs="*", type=Path, help="default: every notebook of the course")
    run = sub.add_parser("run", help="run notebooks top to bottom (smoke budget unless MBRL_COURSE_BUDGET is set)")
    run.add_argument("paths", nargs="+", type=Path)
    run.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    args = parser.parse_args(argv)

    if args.command == "strip":
        for nb_path in args.paths:
            nb = nbformat.read(nb_path, as_version=4)
            nbformat.write(strip_outputs(nb), nb_path)
            print(f"stripped {nb_path}")
        return 0
    if args.command in ("check", "relink"):
        root = repo_root()
        paths = [p.resolve().relative_to(root) for p in args.paths] if args.paths else find_notebooks(root)
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
            problems += [f"{rel}: cell {i} has outputs; strip them" for i in has_outputs(nb)]
        print("\n".join(problems) or f"{len(paths)} notebook(s): all fine (links open {where})")
        if any(f"expected {REPO}@{BRANCH}" in problem for problem in problems):
            print(f"links must open {where}; to rewrite them: {RELINK_HINT}")
        return 1 if problems else 0
    os.environ.setdefault("MBRL_COURSE_BUDGET", "smoke")
    failed = 0
    for nb_path in args.paths:
        try:
            run_notebook(nb_path, timeout=args.timeout)
            print(f"ok {nb_path}")
        except NotebookError as err:
            failed += 1
            print(err, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main())
