"""The student repository (`mbrl-course course export-student DIR`): what goes out, what stays home,
and the checks that make a leaking or broken export fail.

The course itself is exported once into a temporary folder and checked with oracles of its own (the
solution notebooks' secret lines, plain regular expressions for the links, a fresh Python and pytest
run in the export); the failure modes are exercised on a small course built in tmp_path.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import nbformat
import pytest

from mbrl_course.grading import links
from mbrl_course.grading.export import (
    ExportError,
    export_student,
    strip_instructor_blocks,
    verify_export,
)
from mbrl_course.grading.notebooks import header_cells

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "solutions"
CONFIG = links.CONFIG
CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("MBRL_COURSE_ROOT", links.REPO_ENV, links.BRANCH_ENV)}
GIT_ID = ["-c", "user.name=Test", "-c", "user.email=test@example.org"]


def _in_git_checkout() -> bool:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == "true"


needs_git_checkout = pytest.mark.skipif(not _in_git_checkout(), reason="the export lists files with git ls-files")


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    dest = tmp_path_factory.mktemp("export") / "student"
    summary = export_student(REPO, dest)
    return dest, summary


def exported_files(dest: Path) -> list[str]:
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()
                  and p.relative_to(dest).parts[0] != ".git")


def _secret_lines() -> set[str]:
    """Lines of solution and hidden-test regions of the solution notebooks (long enough to be telling)."""
    secret = set()
    for path in SOURCES.rglob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            inside = False
            for line in cell.source.splitlines():
                bare = line.strip()
                if bare.startswith(("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS")):
                    inside = True
                elif bare.startswith("### END"):
                    inside = False
                elif inside and len(bare) >= 25:
                    secret.add(bare)
    return secret


def _lines_inside_strings(source: str) -> set[int]:
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.STRING:
            lines |= set(range(token.start[0], token.end[0] + 1))
    return lines


# ------------------------------------------------------------------------------ the course's export
@needs_git_checkout
def test_the_instructors_files_stay_home(student):
    dest, summary = student
    files = exported_files(dest)
    assert files == sorted(summary.files)
    assert not (dest / "solutions").exists() and not (dest / "nbgrader_config.py").exists()
    assert not (dest / "docs" / "instructor-guide.md").exists()
    assert not any("hidden_checks" in f or f.startswith(("gradebook", "submitted/", "grades/")) for f in files)
    for tests_using_solutions in ("tests/test_grading.py", "tests/test_grading_kalman.py", "tests/grading_helpers.py"):
        assert tests_using_solutions not in files
    for needed in ("mbrl_course/grading/instructor.py", "lectures/01-mbrl-templates.ipynb", "tests/conftest.py",
                   "tests/test_notebooks.py", "README.md", "Makefile", "course.mk", "pyproject.toml",
                   "environment.yml", "postBuild", "start", "apt.txt"):
        assert needed in files, needed
    assert {p.relative_to(REPO / "assignments").as_posix() for p in (REPO / "assignments").rglob("*.ipynb")} == \
        {p.relative_to(dest / "assignments").as_posix() for p in (dest / "assignments").rglob("*.ipynb")}
    tracked = set(subprocess.run(["git", "-C", str(REPO), "ls-files"], capture_output=True, text=True,
                                 check=True).stdout.split())
    assert set(files) <= tracked
    assert "solutions/ (" in summary.format() and f"{len(files)} files" in summary.format()


@needs_git_checkout
def test_no_file_holds_a_solution_hidden_test_or_instructor_block(student):
    dest, _ = student
    secret = _secret_lines()
    assert len(secret) > 50  # the oracle really read the solutions
    for rel in exported_files(dest):
        text = (dest / rel).read_text(errors="replace")
        if rel.endswith(".ipynb"):
            for cell in nbformat.reads(text, as_version=4).cells:
                assert not re.search("BEGIN SOLUTION|HIDDEN TESTS|MARK SCHEME", cell.source), rel
                leaked = [line for line in secret if line in cell.source]
                assert not leaked, f"{rel} leaks {leaked[:3]}"
        region_lines = {number for number, line in enumerate(text.splitlines(), start=1)
                        if line.strip().startswith(("### BEGIN SOLUTION", "### BEGIN HIDDEN TESTS"))}
        if rel.endswith(".py"):  # a docstring may show a region as an example; a comment would be one
            region_lines -= _lines_inside_strings(text)
        assert not region_lines, f"{rel}: lines {sorted(region_lines)}"
        assert "INSTRUCTOR ONLY -->" not in text and "# END INSTRUCTOR ONLY" not in text, rel
    readme = (dest / "README.md").read_text()
    assert "## For instructors" not in readme and "instructor-guide.md" not in readme
    assert "course-release" not in (dest / "course.mk").read_text()


@needs_git_checkout
def test_notebook_links_open_the_student_repository_and_existing_files(student):
    dest, _ = student
    colab = re.compile(r"https://colab\.research\.google\.com/github/([^/\s]+/[^/\s]+)/blob/([^/\s]+)/([^)\s]+)")
    binder = re.compile(r"https://mybinder\.org/v2/gh/([^/\s]+/[^/\s]+)/([^?\s]+)\?labpath=([^)\s]+)")
    install = re.compile(r"git\+https://github\.com/([^@\s]+)@([^\s\"]+)")
    notebooks = sorted(dest.rglob("*.ipynb"))
    assert {p.parent.name for p in notebooks} >= {"lectures", "01-planning"}
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        rel = path.relative_to(dest).as_posix()
        found = [m.groups() for pattern in (colab, binder) for cell in nb.cells for m in pattern.finditer(cell.source)]
        assert len(found) == 2, rel
        for repo, branch, target in found:
            assert (repo, branch, target) == (CONFIG.repo, CONFIG.branch, rel)
            assert (dest / target).is_file()
        installs = [m.groups() for cell in nb.cells for m in install.finditer(cell.source)]
        assert installs == [(CONFIG.repo, CONFIG.branch)], rel
    assert links.read_config(dest, environ={}) == links.LinkConfig(CONFIG.repo, CONFIG.branch,
                                                                     links.read_config(dest, environ={}).origin)


@needs_git_checkout
def test_the_exported_package_imports_without_hidden_checks_and_says_course_is_the_instructors(student):
    dest, _ = student
    env = {**CLEAN_ENV, "PYTHONPATH": str(dest)}
    code = (
        "import mbrl_course, mbrl_course.grading.links as links\n"
        "from mbrl_course.grading.instructor import HiddenChecksMissing, hidden_checks\n"
        f"assert mbrl_course.__file__.startswith({str(dest)!r}), mbrl_course.__file__\n"
        "try:\n"
        "    hidden_checks('planning')\n"
        "except HiddenChecksMissing as err:\n"
        "    print('missing:', err)\n"
        "print(links.REPO, links.BRANCH)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=dest, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "missing: hidden checks 'planning'" in out.stdout
    assert out.stdout.splitlines()[-1] == f"{CONFIG.repo} {CONFIG.branch}"

    check = subprocess.run([sys.executable, "-m", "mbrl_course.grading.notebooks", "check"], capture_output=True,
                           text=True, env=env, cwd=dest, timeout=300)
    assert check.returncode == 0 and "all fine" in check.stdout, check.stdout + check.stderr
    course = subprocess.run([sys.executable, "-m", "mbrl_course.grading.cli", "release"], capture_output=True,
                            text=True, env=env, cwd=dest, timeout=300)
    assert course.returncode == 1 and "is the instructor's" in course.stderr


@needs_git_checkout
@pytest.mark.slow
def test_the_exported_tests_collect_in_the_student_repository(student):
    dest, _ = student
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                         capture_output=True, text=True, cwd=dest, timeout=600,
                         env={**CLEAN_ENV, "PYTHONPATH": str(dest)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "tests/test_notebooks.py::" in out.stdout and "test_grading" not in out.stdout


@needs_git_checkout
def test_a_non_empty_dir_is_refused_and_force_replaces_it_but_keeps_git(tmp_path):
    dest = tmp_path / "student"
    (dest / ".git").mkdir(parents=True)
    (dest / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    export_student(REPO, dest)  # a .git alone: an empty clone, nothing to replace
    (dest / "stale.txt").write_text("from last term")
    with pytest.raises(ExportError, match="not empty .*--force"):
        export_student(REPO, dest)
    assert (dest / "stale.txt").exists()
    export_student(REPO, dest, force=True)
    assert not (dest / "stale.txt").exists() and (dest / ".git" / "HEAD").is_file()
    assert (dest / "lectures").is_dir()
    for inside in (REPO, REPO / "lectures", REPO.parent):
        with pytest.raises(ExportError, match="overlaps the course folder"):
            export_student(REPO, inside, force=True)


@needs_git_checkout
def test_links_to_another_repository_fail_the_export_and_leave_dir_alone(tmp_path):
    other = links.LinkConfig("someone/else", CONFIG.branch, "test")
    dest = tmp_path / "student"
    with pytest.raises(ExportError) as err:
        export_student(REPO, dest, config=other)
    assert f"opens {CONFIG.repo}@{CONFIG.branch}, expected the student repository someone/else" in str(err.value)
    assert "notebooks relink" in str(err.value)
    assert not dest.exists() and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------ a small course, broken on purpose
def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_ID, "-C", str(folder), *args], capture_output=True, text=True,
                          check=True).stdout


def _write(root: Path, rel: str, text: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)


def _notebook(rel: str, *sources: str) -> str:
    nb = nbformat.v4.new_notebook(cells=[*header_cells(rel, title="# Demo"),
                                         *[nbformat.v4.new_markdown_cell(s) for s in sources]])
    return nbformat.writes(nb)


@pytest.fixture()
def course(tmp_path):
    root = tmp_path / "course"
    files = {
        "nbgrader_config.py": "c = get_config()\n",
        "pyproject.toml": f'[project]\nname = "x"\n\n[tool.mbrl_course]\nstudent_repo = "{CONFIG.repo}"\n'
                          f'branch = "{CONFIG.branch}"\n',
        ".gitignore": "gradebook.db\nscratch/\n",
        "README.md": "# Course\n\nSee [the lectures](lectures/01-x.ipynb).\n<!-- BEGIN INSTRUCTOR ONLY -->\n"
                     "Grading: [guide](docs/instructor-guide.md)\n<!-- END INSTRUCTOR ONLY -->\nThe end.\n",
        "docs/instructor-guide.md": "# Guide\n",
        "docs/students.md": "# For students\n",
        "mbrl_course/__init__.py": "",
        "mbrl_course/grading/__init__.py": "",
        "mbrl_course/grading/checks.py": "def check_shape(x):\n    return x\n",
        "solutions/01-x/01-x.ipynb": _notebook("solutions/01-x/01-x.ipynb", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"),
        "solutions/hidden_checks/planning.py": "import math\n\n\ndef check_secret_oracle(f):\n    return f(math.pi)\n",
        "lectures/01-x.ipynb": _notebook("lectures/01-x.ipynb", "See [assignment 1](../assignments/01-x/01-x.ipynb)."),
        "assignments/01-x/01-x.ipynb": _notebook("assignments/01-x/01-x.ipynb"),
        "tests/test_package.py": "def test_one():\n    assert 1\n",
        "tests/test_hidden.py": "from mbrl_course.grading.instructor import hidden_checks\n",
        "tests/test_solutions.py": "from pathlib import Path\nSOURCE = Path(__file__).parents[1] / 'solutions'\n",
        "notes-for-me.txt": "tracked, but not part of the student repository\n",
    }
    for rel, text in files.items():
        _write(root, rel, text)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _write(root, "gradebook.db", "tracked by mistake")
    _git(root, "add", "-f", "gradebook.db")
    _git(root, "commit", "-q", "-m", "course")
    _write(root, "lectures/untracked-junk.ipynb", "{}")
    _write(root, "scratch/notes.md", "ignored")
    return root


def test_a_small_course_exports_what_students_need(course, tmp_path):
    (course / "docs" / "students.md").write_text("# For students\n\nEdited, not committed yet.\n")
    (course / "tests" / "test_package.py").unlink()
    summary = export_student(course, tmp_path / "out")
    files = exported_files(tmp_path / "out")
    assert files == sorted(["pyproject.toml", ".gitignore", "README.md", "docs/students.md", "mbrl_course/__init__.py",
                            "mbrl_course/grading/__init__.py", "mbrl_course/grading/checks.py", "lectures/01-x.ipynb",
                            "assignments/01-x/01-x.ipynb"])
    assert (tmp_path / "out" / "README.md").read_text() == "# Course\n\nSee [the lectures](lectures/01-x.ipynb).\nThe end.\n"
    assert "Edited" in (tmp_path / "out" / "docs" / "students.md").read_text()
    assert summary.modified == ["docs/students.md"] and "docs/students.md" in summary.format()
    left = {path for paths in summary.left_out.values() for path in paths}
    assert left == {"nbgrader_config.py", "docs/instructor-guide.md", "solutions/01-x/01-x.ipynb",
                    "solutions/hidden_checks/planning.py", "tests/test_hidden.py", "tests/test_solutions.py",
                    "notes-for-me.txt", "gradebook.db", "tests/test_package.py"}
    assert summary.left_out["ignored by git"] == ["gradebook.db"]
    assert summary.left_out["not a regular file in the working tree"] == ["tests/test_package.py"]


@pytest.mark.parametrize("rel, text, phrase", [
    ("lectures/02-y.ipynb", _notebook("lectures/02-y.ipynb", "```\n### BEGIN SOLUTION\n```"), "nbgrader region"),
    ("docs/students.md", "# Hints\n\n### BEGIN HIDDEN TESTS\n", "nbgrader region (BEGIN HIDDEN TESTS)"),
    ("mbrl_course/helpers.py", "x = 1  # BEGIN MARK SCHEME\n", "nbgrader region (BEGIN MARK SCHEME)"),
    ("lectures/02-y.ipynb", _notebook("lectures/02-y.ipynb", "[A1](../solutions/01-x/01-x.ipynb)"),
     "which the student repository does not have"),
    ("lectures/02-y.ipynb", _notebook("lectures/02-y.ipynb", "[A0](https://colab.research.google.com/github/"
                                      f"old/course/blob/{CONFIG.branch}/lectures/02-y.ipynb)"),
     "opens old/course@"),
    ("lectures/02-y.ipynb", _notebook("lectures/02-y.ipynb", f"[B]({links.binder_url('lectures/99-gone.ipynb')})"),
     "opens lectures/99-gone.ipynb, which the student repository does not have"),
    ("README.md", "[guide](docs/instructor-guide.md)\n", "links to docs/instructor-guide.md"),
    ("mbrl_course/grading/planning.py", "def check_secret_oracle(f):\n    return f(3.14)\n",
     "defines check_secret_oracle, which only the hidden checks should define (solutions/hidden_checks/planning.py)"),
    ("mbrl_course/grading/extra.py", "import math\n\n\ndef check_secret_oracle(f):\n    return f(math.pi)\n",
     "a copy of a module of solutions/hidden_checks/"),
    ("mbrl_course/grading/hidden_checks/__init__.py", "", "the instructor's, must not be in the student repository"),
    ("README.md", "<!-- BEGIN INSTRUCTOR ONLY -->\nnever closed\n", "never closed"),
])
def test_an_unsafe_or_broken_export_fails_loudly_and_leaves_dir_alone(course, tmp_path, rel, text, phrase):
    _write(course, rel, text)
    _git(course, "add", "-A")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "last-term.txt").write_text("kept")
    with pytest.raises(ExportError) as err:
        export_student(course, dest, force=True)
    assert phrase in str(err.value)
    assert exported_files(dest) == ["last-term.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["course", "out"]  # no staging folder left behind


def test_git_commits_the_export_and_a_second_export_only_what_changed(course, tmp_path):
    dest = tmp_path / "out"
    first = export_student(course, dest, git=True)
    assert first.commit and _git(dest, "status", "--porcelain") == ""
    assert _git(dest, "rev-parse", "--abbrev-ref", "HEAD").strip() == CONFIG.branch
    assert export_student(course, dest, force=True, git=True).commit is None  # nothing changed
    _write(course, "lectures/01-x.ipynb", _notebook("lectures/01-x.ipynb", "New this term."))
    second = export_student(course, dest, force=True, git=True)
    assert second.commit and second.commit != first.commit
    assert _git(dest, "diff", "--name-only", "HEAD~1", "HEAD").split() == ["lectures/01-x.ipynb"]


def test_pyproject_of_the_export_names_the_student_repository_it_was_made_for(course, tmp_path):
    fork = links.LinkConfig("uni-x/mbrl-2026", CONFIG.branch, "test")
    for rel in ("lectures/01-x.ipynb", "assignments/01-x/01-x.ipynb"):
        nb = nbformat.read(course / rel, as_version=4)
        for cell in nb.cells:
            cell.source = cell.source.replace(f"/{CONFIG.repo}/", f"/{fork.repo}/").replace(
                f"/{CONFIG.repo}@", f"/{fork.repo}@")
        nbformat.write(nb, course / rel)
    export_student(course, tmp_path / "out", config=fork)
    written = links.read_config(tmp_path / "out", environ={})
    assert (written.repo, written.branch) == (fork.repo, fork.branch)
    assert verify_export(tmp_path / "out", fork) == []
    assert any("expected the student repository" in p for p in verify_export(tmp_path / "out", CONFIG))


def test_instructor_blocks_are_cut_whatever_the_comment_sign():
    text = "a\n# BEGIN INSTRUCTOR ONLY\nb\n# END INSTRUCTOR ONLY\nc\n<!-- BEGIN INSTRUCTOR ONLY -->\nd\n<!-- END INSTRUCTOR ONLY -->\n"
    assert strip_instructor_blocks(text) == "a\nc\n"
    mention = 'MARKERS = ("BEGIN INSTRUCTOR ONLY", "END INSTRUCTOR ONLY")  # a mention is no block\n'
    assert strip_instructor_blocks(mention) == mention
    with pytest.raises(ExportError, match="without a BEGIN"):
        strip_instructor_blocks("# END INSTRUCTOR ONLY\n", "x.mk")
