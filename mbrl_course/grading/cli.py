"""``mbrl-course course ...``: the instructor's commands (see docs/instructor-guide.md).

    mbrl-course course release [ASSIGNMENT ...]            regenerate assignments/ from solutions/
    mbrl-course course validate [ASSIGNMENT ...]           solution gets full marks, blank release 0
    mbrl-course course autograde ASSIGNMENT [--student ID ...] [--timeout S]
    mbrl-course course export ASSIGNMENT [--out grades.csv]
    mbrl-course course feedback ASSIGNMENT [--student ID ...]
    mbrl-course course export-student DIR [--force] [--git]   the public student repository, in DIR

Each works on the course folder: ``--course-dir`` or the nearest folder (from the working
directory up) holding ``nbgrader_config.py``: the instructor's repository (the student repository
has no ``nbgrader_config.py`` and no ``solutions/``). Without the ``mbrl-course`` entry point:
``python -m mbrl_course.grading.cli release ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ACTIONS = ("release", "validate", "autograde", "export", "feedback", "export-student")
NOT_A_COURSE_FOLDER = (
    "`mbrl-course course` is the instructor's: it works in the instructor's (private) course repository, "
    "which holds nbgrader_config.py and solutions/. This looks like the student repository, which has neither: "
    "students need no `course` command (open the notebooks in lectures/ and assignments/)."
)


def _add_actions(sub) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--course-dir", type=Path, default=None,
                        help="course folder (default: the nearest folder with nbgrader_config.py)")

    rel = sub.add_parser("release", parents=[common], help="regenerate assignments/<a>/ from solutions/<a>/")
    rel.add_argument("assignments", nargs="*", help="assignment names (default: every folder of solutions/)")

    val = sub.add_parser("validate", parents=[common],
                         help="check: release up to date, nothing leaked, solution full marks, blank release 0")
    val.add_argument("assignments", nargs="*", help="assignment names (default: all)")
    val.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: nbgrader_config.py)")

    auto = sub.add_parser("autograde", parents=[common],
                          help="grade submitted/<student>/<a>/, one student at a time, then export the CSV")
    auto.add_argument("assignment")
    auto.add_argument("--student", action="append", default=None, help="only this student (repeatable)")
    auto.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: nbgrader_config.py)")

    exp = sub.add_parser("export", parents=[common], help="write grades as CSV (default grades/<a>.csv)")
    exp.add_argument("assignment")
    exp.add_argument("--out", type=Path, default=None, help="CSV path")

    fb = sub.add_parser("feedback", parents=[common], help="HTML feedback in feedback/<student>/<a>/")
    fb.add_argument("assignment")
    fb.add_argument("--student", action="append", default=None, help="only this student (repeatable)")

    exs = sub.add_parser("export-student", parents=[common],
                         help="write the public student repository into DIR: no solutions/, no hidden checks")
    exs.add_argument("dir", type=Path, metavar="DIR", help="where to write it (empty, or see --force)")
    exs.add_argument("--force", action="store_true", help="replace DIR's contents (a .git folder in it is kept)")
    exs.add_argument("--git", action="store_true", help="commit the export in DIR (git init first where needed)")


def add_course_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``course`` with its actions to an ``argparse`` subparsers object; return its parser."""
    course = subparsers.add_parser(
        "course", help="instructor commands: release, validate, autograde, export, feedback, export-student",
        description="The instructor's nbgrader pipeline of the course: solutions/ -> assignments/ -> grades and "
                    "feedback, and the student repository (export-student).",
    )
    sub = course.add_subparsers(dest="course_command", required=True)
    _add_actions(sub)
    return course


def run_course(args: argparse.Namespace) -> int:
    """Run the ``course`` action in ``args``; print what happened; return an exit status."""
    from mbrl_course.grading import pipeline

    try:
        try:
            root = pipeline.course_root(args.course_dir)
        except pipeline.CourseError as err:
            print(f"error: {err}\n{NOT_A_COURSE_FOLDER}", file=sys.stderr)
            return 1
        action = args.course_command
        if action in ("release", "validate"):
            names = args.assignments or pipeline.list_assignments(root)
            if not names:
                print(f"no assignments in {root / 'solutions'}", file=sys.stderr)
                return 1
            failed = 0
            for name in names:
                if action == "release":
                    paths = pipeline.release(root, name)
                    print(f"released {name}: " + ", ".join(str(p.relative_to(root)) for p in paths))
                else:
                    problems = pipeline.validate(root, name, timeout=args.timeout)
                    failed += bool(problems)
                    print(f"{name}: " + ("OK" if not problems else "PROBLEMS"))
                    for problem in problems:
                        print(f"  - {problem}")
            return 1 if failed else 0
        if action == "autograde":
            results = pipeline.autograde(root, args.assignment, args.student, timeout=args.timeout)
            if not results:
                print(f"no submissions in submitted/*/{args.assignment}/")
            for r in results:
                line = f"{r.student:<24} {r.score:>6g} / {r.max_score:g}  {r.status}"
                print(line + (f"  ({r.reason})" if r.reason else ""))
            out = pipeline.export_grades(root, args.assignment)
            print(f"grades: {out}")
            return 0
        if action == "export":
            print(pipeline.export_grades(root, args.assignment, args.out))
            return 0
        if action == "export-student":
            from mbrl_course.grading.export import export_student

            print(export_student(root, args.dir, force=args.force, git=args.git).format())
            return 0
        if action == "feedback":
            paths = pipeline.generate_feedback(root, args.assignment, args.student)
            for path in paths:
                print(path.relative_to(root))
            print(f"{len(paths)} feedback file(s)")
            return 0
    except pipeline.CourseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 2


def main(argv: list[str] | None = None) -> int:
    """``python -m mbrl_course.grading.cli ACTION ...`` (the same as ``mbrl-course course ACTION ...``)."""
    parser = argparse.ArgumentParser(prog="python -m mbrl_course.grading.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="course_command", required=True)
    _add_actions(sub)
    return run_course(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
