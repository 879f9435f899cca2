"""Partial credit and messages for the assignments' test cells.

A graded test cell builds a :class:`Report`, runs its checks as weighted *parts*, and ends with
``report.score()``, a number nbgrader reads as the cell's partial credit::

    report = Report("refit", points=2)
    with report.part("mean of the elites"):
        planning.check_refit_mean(refit)
    with report.part("standard deviation of the elites", weight=2):
        planning.check_refit_std(refit)
    with report.part("implemented without mbrl_course.planning", veto=True):
        planning.check_independent(refit)
    report.score()          # the cell's output, e.g. 0.6667, is its score

Score of the cell = points · Σ_{passed parts} weight / Σ_{parts} weight, and 0 when a ``veto``
part fails (e.g. the function called the reference implementation). A part fails when its
block raises; :class:`GradingError` carries a message meant for the student, any other
exception (the student's code crashed) is described with the line of the student's code
that raised it. Warnings and ``stderr`` output inside a part are shown on ``stdout``, so that
they never cost a correct answer its points (nbgrader gives 0 to a cell that writes to stderr).
"""

from __future__ import annotations

import contextlib
import io
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_GRADING_DIR = str(Path(__file__).resolve().parent)


class GradingError(AssertionError):
    """A check failed; the message tells the student what is wrong and what to look at."""


class StudentError(Exception):
    """An exception the student's code raised in its own (sandboxed) process, as the grader sees it."""

    def __init__(self, kind: str, message: str, where: str = "", limit: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        """The exception's type name in the student's process, e.g. ``"RuntimeError"``."""
        self.where = where
        """`` (in f, line N: code)``: the line of the student's code that raised, or ''."""
        self.limit = limit
        """``"memory"`` where a sandbox limit caused it, ``"sandbox"`` where the sandbox refused something."""


@dataclass
class Part:
    """One check of a report and how it went."""

    description: str
    """What the check tests, phrased as the property that should hold."""
    weight: float
    """Its share of the cell's points."""
    veto: bool = False
    """A failing veto part sets the whole cell's score to 0."""
    passed: bool = False
    """Whether the check passed."""
    message: str = ""
    """Why it failed (empty when it passed)."""
    notes: list[str] = field(default_factory=list)
    """Warnings and stderr text the checked code produced."""


def _student_frame(tb) -> str:
    """`` (line N: code)`` of the deepest frame outside the grading package and libraries, or ''."""
    frames = traceback.extract_tb(tb)
    site = ("site-packages", "dist-packages", "/lib/python")
    for frame in reversed(frames):
        filename = frame.filename or ""
        if filename.startswith(_GRADING_DIR) or any(s in filename for s in site):
            continue
        code = (frame.line or "").strip()
        return f" (in {frame.name}, line {frame.lineno}: {code})" if code else f" (in {frame.name})"
    return ""


def describe_exception(err: BaseException) -> str:
    """A one-paragraph description of an exception raised by the student's code."""
    if isinstance(err, NotImplementedError):
        return "not implemented yet: replace `raise NotImplementedError()` with your code"
    if isinstance(err, StudentError):
        first = (str(err).strip().splitlines() or [""])[0]
        return f"your code raised {err.kind}: {first}{err.where}"
    if type(err).__name__ == "SandboxStopped":
        return f"not graded: {err}"
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return f"your code raised {type(err).__name__}: {first}{_student_frame(err.__traceback__)}"


class Report:
    """The checks of one graded cell, their messages and the cell's partial credit."""

    def __init__(self, name: str, points: float, *, quiet: bool = False) -> None:
        if isinstance(points, bool) or not isinstance(points, (int, float)) or points <= 0:
            raise ValueError(f"points: expected a positive number (the cell's points), got {points!r}")
        self.name = name
        self.points = float(points)
        self.quiet = quiet
        self.parts: list[Part] = []

    @contextlib.contextmanager
    def part(self, description: str, weight: float = 1.0, *, veto: bool = False) -> Iterator[Part]:
        """Run a block as one weighted check; record (never propagate) its failure."""
        if weight <= 0:
            raise ValueError(f"weight: expected a positive number, got {weight!r}")
        record = Part(description, float(weight), veto)
        self.parts.append(record)
        captured = io.StringIO()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with contextlib.redirect_stderr(captured):
                    yield record
            except GradingError as err:
                record.message = str(err)
            except KeyboardInterrupt:
                raise
            except BaseException as err:  # the student's code crashed: say where
                record.message = describe_exception(err)
            else:
                record.passed = True
        record.notes += [f"{w.category.__name__}: {w.message}" for w in caught]
        if captured.getvalue().strip():
            record.notes.append("stderr: " + captured.getvalue().strip()[:500])
        if not self.quiet:
            self._print_part(record)

    def _print_part(self, record: Part) -> None:
        mark = "PASS" if record.passed else "FAIL"
        print(f"[{mark}] {self.name}: {record.description}")
        if record.message:
            for line in record.message.splitlines():
                print(f"       {line}")
        for note in record.notes[:5]:
            print(f"       note: {note}")

    @property
    def fraction(self) -> float:
        """Σ_{passed} weight / Σ weight over the non-veto parts; 0 when a veto part failed or nothing ran."""
        if not self.parts or any(p.veto and not p.passed for p in self.parts):
            return 0.0
        weighted = [p for p in self.parts if not p.veto]
        if not weighted:
            return 1.0
        return sum(p.weight for p in weighted if p.passed) / sum(p.weight for p in weighted)

    def score(self) -> float:
        """Print a summary and return the cell's points, points · :attr:`fraction` (nbgrader's partial credit)."""
        value = min(self.points, round(self.points * self.fraction, 4))
        failed = [p for p in self.parts if not p.passed]
        if not self.quiet:
            print(f"{self.name}: {value:g} / {self.points:g} points from the {len(self.parts)} check(s) run here.")
            if any(p.veto and not p.passed for p in failed):
                print("  A required check failed (see above): this cell scores 0.")
        return value
