"""What the grading tests of every assignment share: building submissions from a solution notebook
by targeted edits, and a fresh copy of the course to release and grade in.

A bug table maps a student's name to edits ``(grade_id, old, new)``: in the cell ``grade_id``,
``old`` (which must occur exactly once) becomes ``new``; ``old=None`` replaces the function's body
after its docstring.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]


def nbgrader_id(cell) -> str | None:
    """The nbgrader ``grade_id`` of a cell (None for cells nbgrader does not manage)."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def edit_source(source: str, old: str | None, new: str, where: str) -> str:
    """Replace ``old`` (exactly once) in a cell; ``old=None`` replaces the function's body after its docstring."""
    if old is None:
        end_of_docstring = source.index('"""\n', source.index('"""') + 3) + 4
        return source[:end_of_docstring] + new
    assert source.count(old) == 1, f"{where}: expected {old!r} once in the solution; update the bug table"
    return source.replace(old, new)


def apply_edits(nb, edits) -> nbformat.NotebookNode:
    """A copy of notebook ``nb`` with ``edits`` (``(grade_id, old, new)`` each) applied."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for grade_id, old, new in edits:
        cells = [c for c in nb.cells if nbgrader_id(c) == grade_id]
        assert len(cells) == 1, f"no cell {grade_id}"
        cells[0].source = edit_source(cells[0].source, old, new, grade_id)
    return nb


def cell_by_id(nb, grade_id):
    """The cell of ``nb`` whose nbgrader ``grade_id`` is ``grade_id``."""
    return next(c for c in nb.cells if nbgrader_id(c) == grade_id)


def new_course(dest: Path, with_release: bool) -> Path:
    """A copy of the course (nbgrader config, ``solutions/``, and ``assignments/`` if asked) in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "nbgrader_config.py", dest / "nbgrader_config.py")
    shutil.copytree(REPO / "solutions", dest / "solutions")
    if with_release:
        shutil.copytree(REPO / "assignments", dest / "assignments")
    return dest


def solution_namespace(source: Path, edits=(), extra_cells: tuple[str, ...] = ("imports",)) -> dict:
    """The functions of the solution notebook ``source`` with ``edits`` applied: its solution cells and
    the cells named in ``extra_cells`` (imports, a shared model...), executed in order into one namespace."""
    nb = apply_edits(nbformat.read(source, as_version=4), edits)
    namespace: dict = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") in extra_cells):
            exec(compile(cell.source, f"<{meta['grade_id']}>", "exec"), namespace)  # noqa: S102
    return namespace
