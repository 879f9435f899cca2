"""``mbrl-course course export-student DIR``: the student repository, written from the instructor's.

The instructor's repository is private: it holds ``solutions/`` (reference solutions and hidden
tests) and ``solutions/hidden_checks/``. Students get a public copy without them, made here::

    export_student(root, "../mbrl_course-student")          # or: mbrl-course course export-student DIR

What goes out: the files git tracks in the course folder (``git ls-files``: untracked junk never
leaves) under :data:`STUDENT_PATHS`, except

- :data:`INSTRUCTOR_PATHS`: ``solutions/``, ``nbgrader_config.py`` (students need no nbgrader course
  folder; without it ``mbrl-course course`` says it is the instructor's), the instructor guide;
- tests and benchmarks that use the instructor's files (:data:`INSTRUCTOR_FILE_USE` finds them:
  hidden checks, ``solutions/``, ``nbgrader_config.py``, the grading tests' helper); the other tests
  go out, so ``make test`` works in the student repository;
- the grading workspace (:data:`WORKSPACE`) and tracked files that git ignores.

On the way, instructor-only blocks are cut: from a line that starts (after the comment sign of the
file: ``#``, ``<!--``, ...) with ``BEGIN INSTRUCTOR ONLY`` to the line that starts with ``END
INSTRUCTOR ONLY`` (``README.md``, ``course.mk``), and ``pyproject.toml``'s
``[tool.mbrl_course]`` gets the configured student repository (:mod:`mbrl_course.grading.links`).

Then :func:`verify_export` reads back what was written and the export fails (:class:`ExportError`,
DIR untouched) if anything holds a solution, hidden-test or mark-scheme region, links to another
repository than the student repository or to a file the export lacks, or carries the hidden checks
(``solutions/``, ``hidden_checks``, or a name that ``solutions/hidden_checks/*.py`` defines
appearing in ``mbrl_course/grading/``).
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import re
import shutil
import subprocess
import tempfile
import tokenize
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import nbformat

from mbrl_course.grading import links
from mbrl_course.grading.pipeline import CourseError

STUDENT_PATHS = (
    "mbrl_course/", "lectures/", "assignments/", "docs/", "tests/", "benchmarks/", ".ci/",
    "README.md", "pyproject.toml", "Makefile", "course.mk", "environment.yml", "postBuild", "start", "apt.txt",
    ".gitignore", "LICENSE", "LICENSE.md", "LICENSE.txt", "CITATION.cff",
)
"""What the student repository is made of (folders end with ``/``); any other tracked file stays home."""
INSTRUCTOR_PATHS = ("solutions/", "nbgrader_config.py", "docs/instructor-guide.md")
"""Tracked files that are the instructor's only."""
WORKSPACE = ("gradebook.db", ".nbgrader.log", "submitted/", "autograded/", "feedback/", "grades/", "runs/",
             ".venv/", ".device/")
"""The grading workspace and local state, never exported even if tracked by mistake."""
SCANNED_FOR_INSTRUCTOR_USE = ("tests/", "benchmarks/")
INSTRUCTOR_FILE_USE = re.compile(
    r"""hidden_checks|grading_helpers|nbgrader_config\.py|/\s*["']solutions["']|["']solutions/""")
"""A test or benchmark that matches needs the instructor's files: hidden checks, ``solutions/``, the
nbgrader configuration or ``tests/grading_helpers.py`` (which copies them)."""

REGION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
                  "BEGIN MARK SCHEME", "END MARK SCHEME")
"""nbgrader's region markers (``### BEGIN SOLUTION``, ``=== BEGIN MARK SCHEME ===``, ...)."""
BEGIN_INSTRUCTOR, END_INSTRUCTOR = "BEGIN INSTRUCTOR ONLY", "END INSTRUCTOR ONLY"
_COMMENT_START = r"^[ \t]*(?:#+|<!--|//|/\*|;+|%+|--)?[ \t]*"
_BLOCK_LINE = re.compile(_COMMENT_START + rf"(?P<which>{BEGIN_INSTRUCTOR}|{END_INSTRUCTOR})\b", re.MULTILINE)
"""A line that opens or closes an instructor-only block: the marker first, after the comment sign."""
_MARKDOWN_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|#|//)", re.IGNORECASE)


class ExportError(CourseError):
    """The student repository could not be written, or what was written fails a check; the message says which."""


@dataclass
class ExportSummary:
    """What :func:`export_student` wrote."""

    dest: Path
    files: list[str]
    """Exported paths, relative to ``dest``, POSIX style."""
    size: int
    """Bytes written."""
    left_out: dict[str, list[str]] = field(default_factory=dict)
    """Tracked files not exported, by reason."""
    config: links.LinkConfig | None = None
    modified: list[str] = field(default_factory=list)
    """Exported files with changes not committed in the course (exported as they are in the working tree)."""
    commit: str | None = None
    """The commit made in ``dest`` (``--git``), if any."""

    def format(self) -> str:
        """A few lines for the terminal: files by folder, size, what stayed home, where the links point."""
        folders = Counter(p.split("/", 1)[0] + "/" for p in self.files if "/" in p)
        lines = [f"student repository in {self.dest}: {len(self.files)} files, {_size(self.size)}"]
        lines += [f"  {top:<16} {n:>4} file{'s' * (n > 1)}" for top, n in sorted(folders.items())]
        lines.append("  and " + ", ".join(sorted(p for p in self.files if "/" not in p)))
        if self.config is not None:
            lines.append(f"links open {self.config.repo}@{self.config.branch} (from {self.config.origin})")
        if self.left_out:
            lines.append("left out:")
            for reason, paths in self.left_out.items():
                lines.append(f"  {reason}: " + ", ".join(_compact(paths)))
        if self.modified:
            lines.append(f"note: {len(self.modified)} exported file(s) have changes not committed in the course, "
                         "exported as they are: " + ", ".join(self.modified))
        if self.commit:
            lines.append(f"committed {self.commit} in {self.dest}")
        return "\n".join(lines)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1024**2 else f"{n / 1024**2:.1f} MiB"


def _compact(paths: list[str]) -> list[str]:
    """``solutions/a.ipynb, solutions/b.ipynb`` -> ``solutions/ (2 files)``; other paths as they are."""
    folders = [entry for entry in (*INSTRUCTOR_PATHS, *WORKSPACE) if entry.endswith("/")]
    counts = Counter(next((f for f in folders if path.startswith(f)), path) for path in paths)
    return [f"{key} ({n} file{'s' * (n > 1)})" if key.endswith("/") else key for key, n in counts.items()]


def _under(path: str, entry: str) -> bool:
    return path.startswith(entry) if entry.endswith("/") else path == entry


# ------------------------------------------------------------------------------ what goes out
def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ExportError("git is not installed: the export takes its file list from `git ls-files`") from None
    if out.returncode != 0:
        raise ExportError(f"git {' '.join(args)} failed in {root}: {out.stderr.strip()}")
    return out.stdout


@dataclass
class TrackedFiles:
    """The files git tracks in the course folder, as paths relative to it."""

    files: list[str]
    """Regular files in the working tree, not ignored: the candidates for the export."""
    ignored: list[str]
    """Tracked, but matching ``.gitignore`` (committed by mistake)."""
    absent: list[str]
    """Tracked, but deleted from the working tree or not a regular file (a link)."""
    modified: list[str]
    """Tracked files whose working-tree content differs from the last commit (the export takes it as it is)."""


def tracked_files(root: str | Path) -> TrackedFiles:
    """What git tracks in the course folder ``root``. Raises :class:`ExportError` where it is no git checkout."""
    root = Path(root)
    tracked = sorted({p for p in _git(root, "ls-files", "-z", "--cached").split("\0") if p})
    ignored = {p for p in _git(root, "ls-files", "-z", "--cached", "--ignored", "--exclude-standard").split("\0") if p}
    modified = {p for p in _git(root, "ls-files", "-z", "--modified").split("\0") if p}
    regular = {p for p in tracked if (root / p).is_file() and not (root / p).is_symlink()}
    return TrackedFiles(files=[p for p in tracked if p in regular and p not in ignored],
                        ignored=sorted(ignored & regular), absent=[p for p in tracked if p not in regular],
                        modified=sorted(modified & regular))


def uses_instructor_files(text: str) -> bool:
    """Whether a test or benchmark source needs the instructor's files (:data:`INSTRUCTOR_FILE_USE`)."""
    return INSTRUCTOR_FILE_USE.search(text) is not None


def plan_export(root: str | Path, tracked: TrackedFiles) -> tuple[list[str], dict[str, list[str]]]:
    """Split the :func:`tracked_files` of ``root`` into (exported, left out by reason)."""
    root = Path(root)
    exported, left_out = [], {}

    def leave(reason: str, path: str) -> None:
        left_out.setdefault(reason, []).append(path)

    for path in tracked.files:
        if any(_under(path, entry) for entry in WORKSPACE):
            leave("grading workspace and local state", path)
        elif any(_under(path, entry) for entry in INSTRUCTOR_PATHS):
            leave("instructor only", path)
        elif not any(_under(path, entry) for entry in STUDENT_PATHS):
            leave("not part of the student repository (STUDENT_PATHS)", path)
        elif (any(_under(path, entry) for entry in SCANNED_FOR_INSTRUCTOR_USE) and path.endswith(".py")
              and uses_instructor_files((root / path).read_text(encoding="utf-8", errors="replace"))):
            leave("uses the instructor's files", path)
        else:
            exported.append(path)
    for path in tracked.ignored:
        leave("ignored by git", path)
    for path in tracked.absent:
        leave("not a regular file in the working tree", path)
    return exported, left_out


def strip_instructor_blocks(text: str, where: str = "") -> str:
    """``text`` without the lines from a ``BEGIN INSTRUCTOR ONLY`` line to its ``END INSTRUCTOR ONLY`` line."""
    out, start = [], None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        marker = _BLOCK_LINE.match(line)
        which = marker["which"] if marker else None
        if which == BEGIN_INSTRUCTOR:
            if start is not None:
                raise ExportError(f"{where}:{number}: {BEGIN_INSTRUCTOR} inside the block opened at line {start}")
            start = number
        elif which == END_INSTRUCTOR:
            if start is None:
                raise ExportError(f"{where}:{number}: {END_INSTRUCTOR} without a {BEGIN_INSTRUCTOR} before it")
            start = None
        elif start is None:
            out.append(line)
    if start is not None:
        raise ExportError(f"{where}:{start}: {BEGIN_INSTRUCTOR} is never closed by {END_INSTRUCTOR}")
    return "".join(out)


_TABLE_HEADER = re.compile(r"^\[\s*tool\s*\.\s*mbrl_course\s*\]\s*(#.*)?$", re.MULTILINE)


def configure_pyproject(text: str, config: links.LinkConfig) -> str:
    """``pyproject.toml`` text whose ``[tool.mbrl_course]`` table names ``config``'s repository and branch."""
    values = {"student_repo": config.repo, "branch": config.branch}
    header = _TABLE_HEADER.search(text)
    if header is None:
        table = "\n".join(f'{key} = "{value}"' for key, value in values.items())
        return text.rstrip("\n") + f"\n\n[{links.CONFIG_TABLE}]\n{table}\n"
    following = re.search(r"^\[", text[header.end():], re.MULTILINE)
    end = header.end() + following.start() if following else len(text)
    body = text[header.end():end]
    for key, value in values.items():
        line = re.compile(rf"^{key}\s*=.*$", re.MULTILINE)
        new = f'{key} = "{value}"'
        body = line.sub(new, body, count=1) if line.search(body) else "\n" + new + body
    return text[:header.end()] + body + text[end:]


def _write_tree(root: Path, stage: Path, files: list[str], config: links.LinkConfig) -> int:
    size = 0
    for path in files:
        source, target = root / path, stage / path
        target.parent.mkdir(parents=True, exist_ok=True)
        data = source.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and _BLOCK_LINE.search(text):
            data = strip_instructor_blocks(text, path).encode("utf-8")
        if path == "pyproject.toml":
            data = configure_pyproject(data.decode("utf-8"), config).encode("utf-8")
        target.write_bytes(data)
        shutil.copymode(source, target)
        size += len(data)
    return size


# ------------------------------------------------------------------------------ checks of the result
def _region_markers_in_python(text: str) -> list[tuple[int, str]]:
    """(line, marker) of every region marker in a comment of Python source (strings that name the
    markers, as the grading pipeline's own checks do, are no regions)."""
    found = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                found += [(token.start[0], m) for m in REGION_MARKERS if m in token.string]
    except (tokenize.TokenError, SyntaxError, IndentationError):
        for number, line in enumerate(text.splitlines(), start=1):
            if line.lstrip().startswith("#"):
                found += [(number, m) for m in REGION_MARKERS if m in line]
    return found


def _region_markers_in_text(text: str) -> list[tuple[int, str]]:
    """(line, marker) of every line that opens or closes a region (``### BEGIN SOLUTION``, ``=== ... ===``)."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        bare = line.strip().lstrip("#=/*;-% ").strip()
        found += [(number, m) for m in REGION_MARKERS if bare.startswith(m)]
    return found


def _relative_link_problems(text: str, source: PurePosixPath, dest: Path, what: str) -> list[str]:
    problems = []
    for match in _MARKDOWN_LINK.finditer(text):
        target = match.group(1)
        if _EXTERNAL.match(target):
            continue
        target = target.split("#", 1)[0].split("?", 1)[0]
        if not target:
            continue
        resolved = Path(os.path.normpath(dest / source.parent / target))
        if dest.resolve() not in (resolved.resolve(), *resolved.resolve().parents) or not resolved.exists():
            problems.append(f"{source}: {what} links to {target}, which the student repository does not have")
    return problems


def _course_link_problems(text: str, source: PurePosixPath, dest: Path, config: links.LinkConfig,
                          what: str) -> list[str]:
    problems = []
    for link in links.course_links(text):
        if (link.repo, link.branch) != (config.repo, config.branch):
            problems.append(f"{source}: {what}: the {link.kind} link opens {link.repo}@{link.branch}, expected "
                            f"the student repository {config.repo}@{config.branch} (run: "
                            "python -m mbrl_course.grading.notebooks relink)")
        elif link.path is not None and not (dest / link.path).is_file():
            problems.append(f"{source}: {what}: the {link.kind} link opens {link.path}, "
                            "which the student repository does not have")
    return problems


def _top_level_names(text: str) -> set[str]:
    """Public functions and classes defined at the top level of Python source (constants such as a
    shared tolerance may well be defined on both sides; a check function may not)."""
    return {node.name for node in ast.parse(text).body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_")}


def hidden_definitions(root: str | Path) -> tuple[dict[str, str], set[str]]:
    """(public name -> hidden module, SHA-256 of each module) of ``<root>/solutions/hidden_checks/*.py``
    (empty where there is no such folder)."""
    folder = Path(root) / "solutions" / "hidden_checks"
    names, digests = {}, set()
    for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
        text = path.read_text(encoding="utf-8")
        digests.add(hashlib.sha256(text.encode("utf-8")).hexdigest())
        if path.name != "__init__.py":
            names.update(dict.fromkeys(_top_level_names(text), path.relative_to(root).as_posix()))
    return names, digests


def verify_export(dest: str | Path, config: links.LinkConfig | None = None,
                  hidden: tuple[dict[str, str], set[str]] = ({}, set())) -> list[str]:
    """What is wrong with the student repository in ``dest`` (empty list: nothing).

    ``config``: the student repository every notebook must link to (default: the configured one);
    ``hidden``: :func:`hidden_definitions` of the instructor's course, whose names and files must not
    appear in the exported package.
    """
    dest = Path(dest)
    config = links.CONFIG if config is None else config
    hidden_names, hidden_digests = hidden
    problems = []
    files = sorted(p.relative_to(dest) for p in dest.rglob("*")
                   if p.is_file() and ".git" not in p.relative_to(dest).parts[:1])
    for rel_path in files:
        rel = PurePosixPath(rel_path.as_posix())
        text_path = rel.as_posix()
        if (any(_under(text_path, entry) for entry in (*INSTRUCTOR_PATHS, *WORKSPACE))
                or "hidden_checks" in rel.parts or rel.stem == "hidden_checks"):
            problems.append(f"{rel}: the instructor's, must not be in the student repository")
        data = (dest / rel_path).read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if hashlib.sha256(data).hexdigest() in hidden_digests:
            problems.append(f"{rel}: a copy of a module of solutions/hidden_checks/")
        problems += [f"{rel}: an instructor-only block marker is left ({m['which']})" for m in _BLOCK_LINE.finditer(text)]
        if rel.suffix == ".ipynb":
            problems += _notebook_problems(text, rel, dest, config)
            continue
        markers = _region_markers_in_python(text) if rel.suffix == ".py" else _region_markers_in_text(text)
        problems += [f"{rel}:{line}: holds an nbgrader region ({marker})" for line, marker in markers]
        if rel.suffix == ".md":
            problems += _relative_link_problems(text, rel, dest, "a link")
            problems += _course_link_problems(text, rel, dest, config, "a link")
        if rel.suffix == ".py" and any(_under(text_path, entry) for entry in SCANNED_FOR_INSTRUCTOR_USE) \
                and uses_instructor_files(text):
            problems.append(f"{rel}: uses the instructor's files ({INSTRUCTOR_FILE_USE.search(text).group(0)!r})")
        if rel.suffix == ".py" and text_path.startswith("mbrl_course/grading/") and hidden_names:
            try:
                leaked = sorted(_top_level_names(text) & set(hidden_names))
            except SyntaxError as err:
                problems.append(f"{rel}: not valid Python ({err})")
                continue
            problems += [f"{rel}: defines {name}, which only the hidden checks should define "
                         f"({hidden_names[name]})" for name in leaked]
    if (dest / "pyproject.toml").is_file():
        try:
            written = links.read_config(dest, environ={})
        except ValueError as err:
            problems.append(f"pyproject.toml: {err}")
        else:
            if (written.repo, written.branch) != (config.repo, config.branch):
                problems.append(f"pyproject.toml: [{links.CONFIG_TABLE}] names {written.repo}@{written.branch}, "
                                f"expected {config.repo}@{config.branch}")
    return problems


def _notebook_problems(text: str, rel: PurePosixPath, dest: Path, config: links.LinkConfig) -> list[str]:
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as err:  # noqa: BLE001 (any reason a notebook does not load is a problem to report)
        return [f"{rel}: not a readable notebook ({type(err).__name__}: {err})"]
    problems = []
    for index, cell in enumerate(nb.cells):
        what = f"cell {index}"
        problems += [f"{rel}: {what} holds an nbgrader region ({m})" for m in REGION_MARKERS if m in cell.source]
        problems += _course_link_problems(cell.source, rel, dest, config, what)
        if cell.cell_type == "markdown":
            problems += _relative_link_problems(cell.source, rel, dest, what)
    return problems


# ------------------------------------------------------------------------------ the export
def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _clear(folder: Path) -> None:
    """Empty ``folder`` except its ``.git``."""
    for entry in folder.iterdir():
        if entry.name == ".git":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _commit(dest: Path, root: Path, branch: str) -> str | None:
    """Commit everything in ``dest`` (``git init`` first where it is no repository); the new commit or None."""
    if not (dest / ".git").exists():
        _git(dest, "init", "-q")
        _git(dest, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    _git(dest, "add", "-A")
    if not _git(dest, "status", "--porcelain").strip():
        return None
    try:
        origin = _git(root, "describe", "--always", "--dirty").strip()
    except ExportError:
        origin = "an unknown commit"
    env = dict(os.environ)
    identity = {"name": "mbrl-course export", "email": "mbrl-course-export@localhost"}
    for key, fallback in identity.items():  # only where git has no identity configured
        if not _git(dest, "config", "--default", "", f"user.{key}").strip():
            env.setdefault(f"GIT_AUTHOR_{key.upper()}", fallback)
            env.setdefault(f"GIT_COMMITTER_{key.upper()}", fallback)
    out = subprocess.run(["git", "-C", str(dest), "commit", "-q", "-m",
                          f"Student repository, exported from the course at {origin}"],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise ExportError(f"git commit failed in {dest}: {out.stderr.strip()}")
    return _git(dest, "rev-parse", "--short", "HEAD").strip()


def export_student(root: str | Path, dest: str | Path, force: bool = False, git: bool = False,
                   config: links.LinkConfig | None = None) -> ExportSummary:
    """Write the student repository of the course folder ``root`` into ``dest``; check it; return a summary.

    ``dest`` must be empty (a ``.git`` alone is fine) unless ``force``, which replaces its contents and
    keeps its ``.git``, so that a clone of the student repository can be updated in place. The tree is
    written and checked (:func:`verify_export`) beside ``dest`` first: an export that fails a check
    raises :class:`ExportError` and leaves ``dest`` as it was. ``git``: commit the result in ``dest``
    (``git init`` first where it is no repository). ``config``: the student repository the links must
    open (default: :data:`mbrl_course.grading.links.CONFIG`).
    """
    root, dest = Path(root).resolve(), Path(dest).resolve()
    config = links.CONFIG if config is None else config
    if _overlaps(root, dest):
        raise ExportError(f"DIR {dest} overlaps the course folder {root}: choose a folder outside it")
    if dest.exists() and not dest.is_dir():
        raise ExportError(f"DIR {dest} exists and is not a folder")
    present = sorted(p.name for p in dest.iterdir() if p.name != ".git") if dest.is_dir() else []
    if present and not force:
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise ExportError(f"DIR {dest} is not empty ({shown}): pass --force to replace its contents "
                          "(a .git folder in it is kept)")

    tracked = tracked_files(root)
    exported, left_out = plan_export(root, tracked)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}-export-", dir=dest.parent))
    try:
        size = _write_tree(root, stage, exported, config)
        problems = verify_export(stage, config, hidden_definitions(root))
        if problems:
            raise ExportError(f"the student repository would be unsafe or broken; {dest} is unchanged:\n  - "
                              + "\n  - ".join(problems))
        dest.mkdir(exist_ok=True)
        _clear(dest)
        for entry in stage.iterdir():
            os.replace(entry, dest / entry.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    commit = _commit(dest, root, config.branch) if git else None
    modified = [p for p in tracked.modified if p in set(exported)]
    return ExportSummary(dest, exported, size, left_out, config, modified, commit)
