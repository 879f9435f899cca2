"""What the grading tests of every assignment share: building submissions from a solution notebook
by targeted edits, a fresh copy of the course to release and grade in, the instructor's hidden
checks, and the visible and hidden parts of a test cell.

A bug table maps a student's name to edits ``(grade_id, old, new)``: in the cell ``grade_id``,
``old`` (which must occur exactly once) becomes ``new``; ``old=None`` replaces the function's body
after its docstring.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

from mbrl_course.grading import instructor

REPO = Path(__file__).resolve().parents[1]
HIDDEN_MARKER = "### BEGIN HIDDEN TESTS"


def hidden(name: str) -> ModuleType:
    """The instructor's hidden checks ``solutions/hidden_checks/<name>.py`` of this repository, wherever pytest runs."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(instructor.ENV_VAR, str(REPO))
        return instructor.hidden_checks(name)


def part_weights(source: str) -> tuple[float, float]:
    """(visible, hidden) weight of the non-veto ``report.part(...)`` blocks of a test cell's source."""
    weights = [0.0, 0.0]
    visible, _, hidden_part = source.partition(HIDDEN_MARKER)
    for side, text in enumerate((visible, hidden_part)):
        for args in re.findall(r"with report\.part\((.*)\):", text):
            if "veto=True" not in args:
                weight = re.search(r"weight=([0-9.]+)", args)
                weights[side] += float(weight.group(1)) if weight else 1.0
    return weights[0], weights[1]


def visible_calls(source: str, module: str) -> set[str]:
    """Names of ``module.<name>`` called in the visible part of a test cell (before the hidden tests)."""
    return set(re.findall(rf"\b{module}\.(\w+)\(", source.partition(HIDDEN_MARKER)[0]))


def secret_lines_in(release: Path, source: Path, min_length: int = 25) -> list[str]:
    """Lines of ``source``'s solution and hidden-test regions (``min_length`` characters or more, stripped)
    that some cell of ``release`` holds, even where the source also has them outside a region: a part's
    description shared by a visible and a hidden check counts (the student repository's export refuses it)."""
    secret = set()
    for cell in nbformat.read(source, as_version=4).cells:
        inside = False
        for line in cell.source.splitlines():
            bare = line.strip()
            if bare.startswith(("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")):
                inside = True
            elif bare.startswith("### END"):
                inside = False
            elif inside and len(bare) >= min_length:
                secret.add(bare)
    cells = nbformat.read(release, as_version=4).cells
    return sorted(line for line in secret if any(line in cell.source for cell in cells))


def hidden_only_names(module: ModuleType) -> set[str]:
    """Public functions and constants defined in a hidden-checks module itself (not imported into it)."""
    tree = ast.parse(Path(module.__file__).read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return {n for n in names if not n.startswith("_")}


def imports_in_source(path: Path) -> set[str]:
    """Every module a Python file imports, at the top or inside a function (``from a.b import c`` gives a.b, a.b.c)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def visible_code(source: Path, extra_cells: tuple[str, ...] = ("imports",)) -> str:
    """What a student's copy of the notebook runs of ``source``: the cells named in ``extra_cells``, the
    solution cells and the visible part of every test cell (up to its hidden tests), in order."""
    chunks = []
    for cell in nbformat.read(source, as_version=4).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not (meta.get("solution") or meta.get("grade") or meta.get("grade_id") in extra_cells):
            continue
        chunks.append(cell.source.partition(HIDDEN_MARKER)[0] if meta.get("grade") else cell.source)
    return "\n\n".join(chunks)


def run_fresh(code: str) -> tuple[set[str], str]:
    """Run ``code`` in a fresh Python (in the repository, smoke budget): the ``mbrl_course`` modules it
    imported, and what it printed."""
    script = code + "\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith('mbrl_course')))"
    env = dict(os.environ, MBRL_COURSE_BUDGET="smoke",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    return set(ast.literal_eval(lines[-1])), "\n".join(lines[:-1])


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


def reference_phrase(package: str) -> str:
    """What a student who calls ``package`` (or a module inside it) reads: the check's message in a notebook, the
    sandbox's when grading."""
    name = re.escape(package)
    return rf"reference implementation in {name}|importing {name}[\w.]* \(the reference implementation"


def share_submissions(bugs: dict) -> dict[str, list[str]]:
    """Student name -> the bugs of a bug table (name -> (edits, losing cells, ...)) it carries: bugs whose losing
    cells do not overlap share a submission, to keep an autograde run short."""
    groups: list[tuple[list[str], set[str]]] = []
    for bug, (_, losing, *_) in bugs.items():
        for names, cells in groups:
            if not cells & losing:
                names.append(bug)
                cells |= losing
                break
        else:
            groups.append(([bug], set(losing)))
    return {f"wrong_{index}": names for index, (names, _) in enumerate(groups)}


# ------------------------------------------------------------------------------ one assignment's grading, end to end
def autograde_class(course: Path, assignment: str, notebook: str, source: Path, alternative, bugs: dict,
                    students: dict[str, list[str]], timeout: int):
    """Release ``assignment`` in ``course`` (a fresh copy), submit the reference solution, the untouched release, an
    alternative correct solution (``alternative``: edits) and one submission per entry of ``students`` (the edits of
    its bugs, rows of ``bugs``), autograde them all; return ``SimpleNamespace(course, results)`` by student."""
    from types import SimpleNamespace

    from mbrl_course.grading import pipeline

    pipeline.release(course, assignment)
    release_nb = nbformat.read(course / "assignments" / assignment / notebook, as_version=4)
    solution = pipeline.fill_release(release_nb, nbformat.read(source, as_version=4))
    submissions = {"reference_solution": solution, "untouched_release": release_nb,
                   "another_correct_solution": apply_edits(solution, alternative)}
    submissions.update({student: apply_edits(solution, [edit for bug in names for edit in bugs[bug][0]])
                        for student, names in students.items()})
    for student, nb in submissions.items():
        pipeline.submit(course, student, assignment, {notebook: nb})
    results = pipeline.autograde(course, assignment, timeout=timeout)
    return SimpleNamespace(course=course, results={r.student: r for r in results})


def graded_outputs(course: Path, student: str, assignment: str, notebook: str) -> dict[str, str]:
    """grade_id -> the printed text of that cell in ``student``'s autograded notebook."""
    nb = nbformat.read(course / "autograded" / student / assignment / notebook, as_version=4)
    return {nbgrader_id(c): "".join(o.get("text", "") for o in c.get("outputs", []))
            for c in nb.cells if c.cell_type == "code"}


def expect_release_names_no_hidden_check(hidden_module: ModuleType, release: Path, source: Path) -> None:
    """The hidden checks are not installed, and the release holds no secret line and names none of them."""
    assert not (REPO / "mbrl_course" / "grading" / "hidden_checks").exists()
    assert Path(hidden_module.__file__).is_file()
    assert secret_lines_in(release, source) == []
    text = release.read_text()
    for name in hidden_only_names(hidden_module) | {"hidden_checks"}:
        assert not re.search(rf"\b{name}\b", text), f"the release names the hidden {name!r}"


def expect_no_hidden_name_in_the_grading_package(hidden_file: Path) -> None:
    """No module of the installed grading package defines a public name of ``hidden_file`` (the export refuses it)."""
    from mbrl_course.grading import export

    hidden_names = export._top_level_names(hidden_file.read_text())
    for path in sorted((REPO / "mbrl_course" / "grading").glob("*.py")):
        assert not export._top_level_names(path.read_text()) & hidden_names, path


def sandbox_cells_importing(source: Path, is_forbidden, folder: Path) -> dict[str, list[str]]:
    """Cells of ``source`` that run in the student's sandbox (all code cells but the test cells, as IPython
    runs them) -> the forbidden modules (``is_forbidden(name)``) they import; empty: none does."""
    from IPython.core.inputtransformer2 import TransformerManager

    found = {}
    for index, cell in enumerate(nbformat.read(source, as_version=4).cells):
        if cell.cell_type != "code" or cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            continue  # test cells run in the grader (their hidden regions load the instructor's checks)
        path = folder / f"cell_{index}.py"
        path.write_text(TransformerManager().transform_cell(cell.source))
        bad = sorted(m for m in imports_in_source(path) if is_forbidden(m))
        if bad:
            found[nbgrader_id(cell) or cell.get("id")] = bad
    return found


def expect_graded_cells_convention(source: Path, graded_cells: dict[str, float], hidden_name: str,
                                   visible_module: str) -> None:
    """Every graded cell declares its points, ends with report.score(), is locked, hides tests that load
    ``hidden_checks(hidden_name)`` with a vetoed independence check, gives its visible checks (calls of
    ``visible_module``) at least half of the weight and at most 60 %."""
    nb = nbformat.read(source, as_version=4)
    cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    assert {c.metadata.nbgrader.grade_id: c.metadata.nbgrader.points for c in cells} == graded_cells
    for cell in cells:
        name = cell.metadata.nbgrader.grade_id
        assert f"points={cell.metadata.nbgrader.points})" in cell.source
        visible, hidden_part = cell.source.split(HIDDEN_MARKER)
        assert cell.source.rstrip().endswith("report.score()") and cell.metadata.nbgrader.locked
        assert f'hidden_checks("{hidden_name}")' in hidden_part and "check_no_reference_calls" in hidden_part
        assert "veto=True" in hidden_part and "hidden." not in visible
        visible_weight, hidden_weight = part_weights(cell.source)
        assert visible_weight >= hidden_weight > 0, f"{name}: visible {visible_weight}, hidden {hidden_weight}"
        assert visible_weight / (visible_weight + hidden_weight) <= 0.6, name
        assert visible_calls(cell.source, visible_module), name
