"""The instructor's side: from ``solutions/`` to a graded CSV and feedback, with nbgrader.

The course folder (``root``) is the repository root, configured by its ``nbgrader_config.py``
(source ``solutions/``, release ``assignments/``, ``submitted/``, ``autograded/``, ``feedback/``,
``gradebook.db``). Every function takes ``root`` and works on that folder only:

- :func:`release`: regenerate ``assignments/<a>/`` from ``solutions/<a>/`` (nbgrader
  generate_assignment) and check that nothing of the solutions or hidden tests leaked.
- :func:`validate`: in a temporary copy of the course, autograde the reference solution (must
  get every point) and the untouched release (must get 0 in every graded cell).
- :func:`autograde`: grade every submission in ``submitted/*/<a>/``, one student at a time, so
  that a student whose notebook crashes, hangs, is renamed or is not JSON never stops the others;
  each student gets a score and, where something went wrong, a reason.
- :func:`export_grades`: a CSV with one row per submission (score, max, per-cell scores, status,
  reason).
- :func:`generate_feedback`: HTML feedback per student (and a short HTML note for a submission
  that could not be graded).

nbgrader is used through its Python API (``nbgrader.apps.NbGraderAPI``) with the configuration
read from ``<root>/nbgrader_config.py``.
"""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from mbrl_course.grading import execute

CONFIG_FILE = "nbgrader_config.py"
REPORT_DIR = "grades"
"""Where :func:`autograde` keeps its per-student report and :func:`export_grades` its CSV (git-ignored)."""
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS",
                    "BEGIN MARK SCHEME", "END MARK SCHEME")
MISSING_CELL_NOTE = "was missing from the submission"


class CourseError(RuntimeError):
    """Something in the course folder is not as the pipeline needs it; the message says what to do."""


@dataclass
class StudentResult:
    """How autograding one student's submission went."""

    student: str
    assignment: str
    status: str
    """``"graded"`` (nbgrader graded it) or ``"failed"`` (it could not be graded: score 0)."""
    score: float
    max_score: float
    reason: str = ""
    """Why points may be missing beyond failed tests: timeouts, errors, restored cells, bad files."""
    cells: dict[str, float] = field(default_factory=dict)
    """Score of every graded cell, by grade id."""


# ------------------------------------------------------------------------------ the course folder
def course_root(start: str | Path | None = None) -> Path:
    """The course folder: the first of ``start`` (default: the working directory) and its parents
    that holds ``nbgrader_config.py``."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise CourseError(f"no {CONFIG_FILE} in {here} or its parents: run this from the course repository")


def load_config(root: str | Path, timeout: int | None = None):
    """nbgrader's configuration: ``<root>/nbgrader_config.py`` with the root pinned to ``root``."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    root = Path(root).resolve()
    if not (root / CONFIG_FILE).is_file():
        raise CourseError(f"{root} has no {CONFIG_FILE}: not a course folder")
    config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
    extra = Config()
    extra.CourseDirectory.root = str(root)
    extra.SandboxedExecute.course_root = str(root)
    if timeout is not None:
        extra.Execute.timeout = int(timeout)
        extra.SandboxedExecute.cell_seconds = float(timeout)
    config.merge(extra)
    return config


def ensure_alembic_on_path() -> None:
    """nbgrader runs the ``alembic`` command (found on PATH) when it creates a gradebook; when this
    Python's scripts folder (e.g. ``.venv/bin``) is not on PATH, put it there for this process."""
    scripts = os.path.dirname(sys.executable)
    if shutil.which("alembic") is None and os.path.exists(os.path.join(scripts, "alembic")):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


def _api(root: str | Path, timeout: int | None = None):
    import logging

    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    ensure_alembic_on_path()
    config = load_config(root, timeout)
    coursedir = CourseDirectory(config=config)
    # The API looks for nbgrader's exchange (JupyterHub) when it starts and logs a CRITICAL line
    # where there is none; the pipeline does not use the exchange, so keep that line quiet.
    quiet = logging.getLogger("traitlets")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL + 1)
    try:
        api = NbGraderAPI(coursedir=coursedir, config=config)
    finally:
        quiet.setLevel(level)
    api.log.setLevel(logging.WARNING)
    return api


def _db_url(root: Path) -> str:
    """The gradebook's address as the configuration gives it (default ``sqlite:///<root>/gradebook.db``)."""
    from nbgrader.coursedir import CourseDirectory

    return CourseDirectory(config=load_config(root)).db_url


def _dirs(root: Path) -> dict[str, Path]:
    """The course's folders, as ``nbgrader_config.py`` names them."""
    cfg = load_config(root).CourseDirectory
    names = {"source": "solutions", "release": "assignments", "submitted": "submitted",
             "autograded": "autograded", "feedback": "feedback"}
    return {key: root / cfg.get(f"{key}_directory", default) for key, default in names.items()}


def list_assignments(root: str | Path) -> list[str]:
    """Assignments with a source: folders of ``solutions/`` that hold a notebook."""
    source = _dirs(Path(root))["source"]
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))) if source.is_dir() else []


def _check_assignment(root: Path, assignment: str) -> None:
    if assignment not in list_assignments(root):
        raise CourseError(
            f"assignment {assignment!r}: no notebook in {_dirs(root)['source'] / assignment}; "
            f"known assignments: {', '.join(list_assignments(root)) or 'none'}"
        )


def _raise_on_failure(result: dict, what: str) -> None:
    if not result.get("success", False):
        detail = (result.get("error") or "").strip().splitlines()[-1:] or [""]
        log = result.get("log", "").strip()
        raise CourseError(f"{what} failed: {detail[0]}\n{log}".rstrip())


# ------------------------------------------------------------------------------ release
def release(root: str | Path, assignment: str) -> list[Path]:
    """Regenerate ``assignments/<assignment>/`` from ``solutions/<assignment>/``; return its notebooks.

    Runs nbgrader's generate_assignment (which also records the assignment, its notebooks and
    its graded cells, hidden tests included, in the gradebook), then checks the release with
    :func:`release_problems` and raises :class:`CourseError` if anything leaked.
    """
    root = Path(root).resolve()
    _check_assignment(root, assignment)
    _raise_on_failure(_api(root).generate_assignment(assignment, force=True, create=True),
                      f"nbgrader generate_assignment {assignment}")
    problems = release_problems(root, assignment)
    if problems:
        raise CourseError("the release leaks solutions or hidden tests:\n" + "\n".join(problems))
    return sorted((_dirs(root)["release"] / assignment).glob("*.ipynb"))


def _marked_lines(source: str) -> tuple[set[str], set[str]]:
    """Lines inside solution / hidden-test regions, and lines outside them (stripped, non-empty)."""
    inside, outside, depth = set(), set(), 0
    for line in source.splitlines():
        text = line.strip()
        if text.startswith("### BEGIN"):
            depth += 1
            continue
        if text.startswith("### END"):
            depth = max(0, depth - 1)
            continue
        if text:
            (inside if depth else outside).add(text)
    return inside, outside


def release_problems(root: str | Path, assignment: str) -> list[str]:
    """What the release of ``assignment`` gives away: solution/hidden-test markers, or any line that
    the source has only inside a solution or hidden-test region. Empty list: nothing."""
    dirs = _dirs(Path(root))
    problems = []
    for source_path in sorted((dirs["source"] / assignment).glob("*.ipynb")):
        release_path = dirs["release"] / assignment / source_path.name
        if not release_path.is_file():
            problems.append(f"{release_path}: missing (run release)")
            continue
        source_nb = nbformat.read(source_path, as_version=4)
        inside, outside = set(), set()
        for cell in source_nb.cells:
            cell_inside, cell_outside = _marked_lines(cell.source)
            inside |= cell_inside
            outside |= cell_outside
        secret = {line for line in inside - outside if len(line) > 3}
        release_nb = nbformat.read(release_path, as_version=4)
        for index, cell in enumerate(release_nb.cells):
            for marker in SOLUTION_MARKERS:
                if marker in cell.source:
                    problems.append(f"{release_path.name} cell {index}: contains {marker!r}")
            for line in cell.source.splitlines():
                if line.strip() in secret:
                    problems.append(f"{release_path.name} cell {index}: leaks {line.strip()!r}")
    return problems


def _ensure_in_gradebook(root: Path, assignment: str) -> None:
    """Autograding needs the assignment's cells in the gradebook: release it if they are not there."""
    from nbgrader.api import Gradebook, MissingEntry

    ensure_alembic_on_path()
    with Gradebook(_db_url(root)) as gb:
        try:
            known = bool(gb.find_assignment(assignment).notebooks)
        except MissingEntry:
            known = False
    if not known:
        release(root, assignment)


# ------------------------------------------------------------------------------ submissions
def fill_release(release_nb: NotebookNode, source_nb: NotebookNode) -> NotebookNode:
    """A copy of the release with every solution cell answered as in the source (what a student
    who wrote the reference solution hands in): the solution regions' code, markers removed."""
    answers = {}
    for cell in source_nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution"):
            lines = [line for line in cell.source.splitlines() if not line.strip().startswith(("### BEGIN", "### END"))]
            answers[meta["grade_id"]] = "\n".join(lines)
    filled = nbformat.from_dict(json.loads(json.dumps(release_nb)))
    for cell in filled.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    return filled


def submit(root: str | Path, student: str, assignment: str, files: dict[str, NotebookNode | str | bytes]) -> Path:
    """Place a student's files in ``submitted/<student>/<assignment>/`` (as nbgrader's collect would).

    ``files`` maps file names to notebooks, text or bytes. Returns the submission folder.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.@+-]+", student):
        raise CourseError(f"student: expected an id of letters, digits and _.@+-, got {student!r}")
    folder = _dirs(Path(root))["submitted"] / student / assignment
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, content in files.items():
        target = folder / name
        if isinstance(content, NotebookNode):
            nbformat.write(content, target)
        elif isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    return folder


def submitted_students(root: str | Path, assignment: str) -> list[str]:
    """Students with a folder ``submitted/<student>/<assignment>/``."""
    submitted = _dirs(Path(root))["submitted"]
    if not submitted.is_dir():
        return []
    return sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir())


# ------------------------------------------------------------------------------ autograde
def _cell_notes(nb: NotebookNode, timeout: int | None) -> list[str]:
    """What went wrong while a graded notebook ran: timeouts, errors outside test cells, restored cells."""
    notes = []
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        name = meta.get("grade_id") or f"cell {cell.get('id') or index}"
        if MISSING_CELL_NOTE in cell.get("source", ""):
            notes.append(f"test cell {name} had been deleted: it was restored and graded")
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") != "error":
                continue
            if output.get("ename") in ("CellTimeoutError", "DeadKernelError") or "timeout" in output.get("ename", "").lower():
                limit = f" after {timeout} s" if timeout else ""
                notes.append(f"{name} ran too long{limit} (an infinite loop?) and was interrupted")
            elif output.get("ename") == "KeyboardInterrupt":
                pass  # the sandbox's own note says which limit interrupted it
            elif not meta.get("grade"):
                notes.append(f"{name} raised {output.get('ename')}: {output.get('evalue', '')[:160]}")
            break
    return notes


def _edited_locked_cells(submitted_nb: NotebookNode, release_nb: NotebookNode) -> list[str]:
    """Grade ids of read-only cells whose source the student changed (nbgrader restores them)."""
    from nbgrader.utils import compute_checksum

    released = {}
    for cell in release_nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("locked") and meta.get("grade_id"):
            released[meta["grade_id"]] = meta.get("checksum")
    edited = []
    for cell in submitted_nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in released and released[grade_id] and compute_checksum(cell) != released[grade_id]:
            edited.append(grade_id)
    return edited


def _precheck(root: Path, student: str, assignment: str) -> tuple[list[str], list[str]]:
    """(fatal problems, notes) of a submission folder before grading: missing, renamed or broken notebooks."""
    dirs = _dirs(root)
    folder = dirs["submitted"] / student / assignment
    fatal, notes = [], []
    for release_path in sorted((dirs["release"] / assignment).glob("*.ipynb")):
        path = folder / release_path.name
        if not path.is_file():
            found = sorted(p.name for p in folder.glob("*.ipynb"))
            fatal.append(
                f"no {release_path.name} in the submission"
                + (f" (found {', '.join(found)}: was it renamed? rename it back and regrade)" if found else "")
            )
            continue
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as err:  # noqa: BLE001 (nbformat raises many kinds for a broken file)
            fatal.append(f"{path.name} is not a readable notebook ({type(err).__name__}: {str(err)[:120]})")
            continue
        edited = _edited_locked_cells(nb, nbformat.read(release_path, as_version=4))
        if edited:
            notes.append(f"read-only cell(s) {', '.join(edited)} had been edited: restored from the release")
    return fatal, notes


def _zero_ungraded(root: Path, assignment: str, student: str) -> None:
    """Give 0 to every grade of a submission that nbgrader could not grade (keeping manual grades)."""
    from nbgrader.api import Gradebook, MissingEntry

    ensure_alembic_on_path()
    with Gradebook(_db_url(root)) as gb:
        gb.update_or_create_student(student)
        try:
            submission = gb.find_submission(assignment, student)
        except MissingEntry:
            submission = gb.add_submission(assignment, student)
        for notebook in submission.notebooks:
            for grade in notebook.grades:
                if grade.manual_score is None and grade.auto_score is None:
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = False
        gb.db.commit()


def read_scores(root: str | Path, assignment: str) -> dict[str, tuple[float, float, dict[str, float]]]:
    """From the gradebook: student -> (score, max score, {grade id: score})."""
    from nbgrader.api import Gradebook, MissingEntry

    scores = {}
    ensure_alembic_on_path()
    with Gradebook(_db_url(Path(root).resolve())) as gb:
        try:
            submissions = gb.assignment_submissions(assignment)
        except MissingEntry:
            return {}
        for submission in submissions:
            cells = {}
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    cells[grade.name] = float(grade.score or 0.0)
            scores[submission.student.id] = (float(submission.score or 0.0), float(submission.max_score or 0.0), cells)
    return scores


def _report_path(root: Path, assignment: str) -> Path:
    return root / REPORT_DIR / f"{assignment}-autograde.json"


def autograde(root: str | Path, assignment: str, students: Iterable[str] | None = None, *,
              timeout: int | None = None) -> list[StudentResult]:
    """Autograde ``submitted/<student>/<assignment>/`` for each student (default: all), one at a time.

    A student's failure (a crash, a hang past ``timeout`` seconds per cell, a renamed or broken
    notebook) never stops the others; a submission nbgrader cannot grade scores 0 with a reason.
    Grades go to the gradebook; results also go to ``grades/<assignment>-autograde.json`` (read by
    :func:`export_grades`). Returns one :class:`StudentResult` per student.
    """
    root = Path(root).resolve()
    _check_assignment(root, assignment)
    _ensure_in_gradebook(root, assignment)
    students = sorted(students) if students is not None else submitted_students(root, assignment)
    missing = [s for s in students if not (_dirs(root)["submitted"] / s / assignment).is_dir()]
    if missing:
        raise CourseError(f"no submission folder submitted/<student>/{assignment} for: {', '.join(missing)}")
    if timeout is None:
        timeout = int(load_config(root).SandboxedExecute.get("cell_seconds", 120))
    api = _api(root, timeout)
    results = []
    for student in students:
        fatal, notes = _precheck(root, student, assignment)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbgrader's own SQLAlchemy warnings for broken submissions
            outcome = api.autograde(assignment, student, force=True, create=True)
        status = "graded" if outcome.get("success") and not fatal else "failed"
        if status == "failed":
            if not fatal:
                error = (outcome.get("error") or outcome.get("log") or "nbgrader failed").strip().splitlines()
                fatal = [f"nbgrader could not grade it: {error[-1] if error else 'unknown error'}"]
            _zero_ungraded(root, assignment, student)
        else:
            for path in sorted((_dirs(root)["autograded"] / student / assignment).glob("*.ipynb")):
                notes += _cell_notes(nbformat.read(path, as_version=4), timeout)
        for path in sorted((_dirs(root)["release"] / assignment).glob("*.ipynb")):
            seen = execute.RESULTS.pop((student, assignment, path.stem), None)
            if seen:
                notes += [note for note in seen["notes"] if note not in notes]
        notes += copied_code(root, student, assignment)
        results.append(StudentResult(student, assignment, status, 0.0, 0.0, "; ".join(fatal + notes)))
    scores = read_scores(root, assignment)
    for result in results:
        score, max_score, cells = scores.get(result.student, (0.0, _max_score(root, assignment), {}))
        result.score, result.max_score, result.cells = score, max_score, cells
    _save_report(root, assignment, results)
    return results


def reference_modules(root: str | Path, assignment: str) -> list[str]:
    """The modules of the reference implementation students of ``assignment`` must not use
    (``c.SandboxedExecute.reference_modules`` in ``nbgrader_config.py``)."""
    config = load_config(root).SandboxedExecute
    per_assignment = dict(config.get("reference_modules", {}) or {})
    return list(config.get("common_reference_modules", []) or []) + list(per_assignment.get(assignment, []))


def copied_code(root: str | Path, student: str, assignment: str) -> list[str]:
    """Flags for the instructor: cells of the submission that repeat the reference source verbatim.

    Flags cost no points (a person judges them); they go to the reason column.
    """
    from mbrl_course.grading.similarity import copied_from_reference

    modules = reference_modules(root, assignment)
    folder = _dirs(Path(root))["submitted"] / student / assignment
    if not modules or not folder.is_dir():
        return []
    answers = {}
    for path in sorted(folder.glob("*.ipynb")):
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 (an unreadable notebook is reported by _precheck)
            continue
        for index, cell in enumerate(nb.cells):
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.get("cell_type") == "code" and not meta.get("locked"):
                answers[meta.get("grade_id") or f"{path.stem} cell {index}"] = cell.get("source", "")
    return [f"possible copy (check by hand): {flag}" for flag in copied_from_reference(answers, modules)]


def _max_score(root: Path, assignment: str) -> float:
    from nbgrader.api import Gradebook, MissingEntry

    ensure_alembic_on_path()
    with Gradebook(_db_url(root)) as gb:
        try:
            return float(gb.find_assignment(assignment).max_score)
        except MissingEntry:
            return 0.0


def _save_report(root: Path, assignment: str, results: list[StudentResult]) -> None:
    path = _report_path(root, assignment)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = {}
    if path.is_file():
        try:
            previous = {r["student"]: r for r in json.loads(path.read_text())}
        except (ValueError, KeyError, TypeError):
            previous = {}
    previous.update({r.student: asdict(r) for r in results})
    path.write_text(json.dumps([previous[k] for k in sorted(previous)], indent=1) + "\n")


def load_report(root: str | Path, assignment: str) -> dict[str, dict]:
    """The last autograde results per student (``grades/<assignment>-autograde.json``), or {}."""
    path = _report_path(Path(root).resolve(), assignment)
    if not path.is_file():
        return {}
    return {r["student"]: r for r in json.loads(path.read_text())}


# ------------------------------------------------------------------------------ export, feedback
def export_grades(root: str | Path, assignment: str, out: str | Path | None = None) -> Path:
    """Write ``student_id, score, max_score, <one column per graded cell>, status, reason`` for every
    submission in the gradebook; return the CSV's path (default ``grades/<assignment>.csv``)."""
    root = Path(root).resolve()
    out = Path(out) if out is not None else root / REPORT_DIR / f"{assignment}.csv"
    scores = read_scores(root, assignment)
    report = load_report(root, assignment)
    cell_names = sorted({name for _, _, cells in scores.values() for name in cells})
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "assignment", "score", "max_score", *cell_names, "status", "reason"])
        for student in sorted(set(scores) | set(report)):
            score, max_score, cells = scores.get(student, (0.0, _max_score(root, assignment), {}))
            info = report.get(student, {})
            writer.writerow([student, assignment, f"{round(score, 4):g}", f"{max_score:g}",
                             *(f"{round(cells.get(name, 0.0), 4):g}" for name in cell_names),
                             info.get("status", "graded"), info.get("reason", "")])
    return out


def generate_feedback(root: str | Path, assignment: str, students: Iterable[str] | None = None) -> list[Path]:
    """HTML feedback in ``feedback/<student>/<assignment>/`` for each autograded student (default: all);
    a submission that could not be graded gets ``grading-problem.html`` with the reason."""
    root = Path(root).resolve()
    dirs = _dirs(root)
    report = load_report(root, assignment)
    wanted = set(students) if students is not None else None
    api = _api(root)
    written = []
    graded = sorted(p.parent.name for p in dirs["autograded"].glob(f"*/{assignment}") if p.is_dir())
    for student in graded:
        if wanted is not None and student not in wanted:
            continue
        _raise_on_failure(api.generate_feedback(assignment, student, force=True),
                          f"nbgrader generate_feedback {assignment} for {student}")
        written += sorted((dirs["feedback"] / student / assignment).glob("*.html"))
    for student, info in sorted(report.items()):
        if info.get("status") != "failed" or (wanted is not None and student not in wanted):
            continue
        folder = dirs["feedback"] / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        note = folder / "grading-problem.html"
        note.write_text(
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>"
            f"{html.escape(assignment)}: not graded</title></head><body>"
            f"<h1>{html.escape(assignment)}: your submission could not be graded</h1>"
            f"<p>Score: {info.get('score', 0):g} / {info.get('max_score', 0):g}</p>"
            f"<p>Reason: {html.escape(info.get('reason', ''))}</p>"
            "<p>Please contact your instructor.</p></body></html>\n"
        )
        written.append(note)
    return written


# ------------------------------------------------------------------------------ validate
def _copy_course(root: Path, dest: Path, assignment: str) -> None:
    from mbrl_course.grading.instructor import HIDDEN_DIR

    dirs = _dirs(root)
    shutil.copy2(root / CONFIG_FILE, dest / CONFIG_FILE)
    if (root / HIDDEN_DIR).is_dir():
        shutil.copytree(root / HIDDEN_DIR, dest / HIDDEN_DIR, ignore=shutil.ignore_patterns("__pycache__"))
    for key in ("source", "release"):
        src = dirs[key] / assignment
        if src.is_dir():
            shutil.copytree(src, dest / dirs[key].relative_to(root) / assignment,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))


def validate(root: str | Path, assignment: str, *, timeout: int | None = None) -> list[str]:
    """Check an assignment end to end in a temporary copy of the course; return the problems (empty: fine).

    The release regenerated from the source must equal the committed ``assignments/<a>/``
    and leak nothing; autograded, the reference solution must get every point of every graded
    cell and the untouched release 0 in every graded cell.
    """
    root = Path(root).resolve()
    _check_assignment(root, assignment)
    problems = []
    with tempfile.TemporaryDirectory(prefix="mbrl-course-validate-") as tmp:
        copy = Path(tmp)
        _copy_course(root, copy, assignment)
        release(copy, assignment)
        problems += release_differences(root, copy, assignment)
        dirs = _dirs(copy)
        for release_path in sorted((dirs["release"] / assignment).glob("*.ipynb")):
            release_nb = nbformat.read(release_path, as_version=4)
            source_nb = nbformat.read(dirs["source"] / assignment / release_path.name, as_version=4)
            submit(copy, "reference-solution", assignment, {release_path.name: fill_release(release_nb, source_nb)})
            submit(copy, "untouched-release", assignment, {release_path.name: release_nb})
        results = {r.student: r for r in autograde(copy, assignment, timeout=timeout)}
        solution, blank = results["reference-solution"], results["untouched-release"]
        if solution.status != "graded" or solution.score < solution.max_score:
            lost = {name: score for name, score in solution.cells.items()}
            problems.append(f"the reference solution scores {solution.score:g}/{solution.max_score:g} "
                            f"({solution.reason or lost})")
        problems += [f"the untouched release scores {score:g} in {name}" for name, score in blank.cells.items() if score]
        if blank.status != "graded":
            problems.append(f"the untouched release could not be graded: {blank.reason}")
    return problems


def release_differences(root: str | Path, other: str | Path, assignment: str) -> list[str]:
    """Files of ``assignments/<assignment>/`` that differ between two course folders (byte for byte)."""
    a = _dirs(Path(root))["release"] / assignment
    b = _dirs(Path(other))["release"] / assignment
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()} if a.is_dir() else set()
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()} if b.is_dir() else set()
    problems = [f"{a / f}: not in the regenerated release" for f in sorted(files_a - files_b)]
    problems += [f"{a / f}: missing (the regenerated release has it): run release" for f in sorted(files_b - files_a)]
    problems += [f"{a / f}: differs from the regenerated release: run release"
                 for f in sorted(files_a & files_b) if (a / f).read_bytes() != (b / f).read_bytes()]
    return problems
