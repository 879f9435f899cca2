"""Copy detection: a function of the reference package pasted into an answer cell is flagged with the
file and lines it came from; the assignments' own reference solutions, written independently of the
package, are not."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import nbformat
import pytest

from mbrl_course.filters import kalman as reference_kalman
from mbrl_course.grading.similarity import copied_from_reference, normalized_lines, reference_files
from mbrl_course.planning import cem as reference_cem

REPO = Path(__file__).resolve().parents[1]
ASSIGNMENTS = {
    "01-planning": ["mbrl_course.planning", "mbrl_course.agents"],
    "02-kalman": ["mbrl_course.filters"],
}


def solution_answers(assignment: str) -> dict[str, str]:
    """grade id -> source of every answer cell of the solution notebook: a student who wrote the reference solution."""
    nb = nbformat.read(REPO / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    answers = {cell.metadata["nbgrader"]["grade_id"]: cell.source for cell in nb.cells
               if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")}
    assert len(answers) >= 5
    return answers


def release_cell(assignment: str, grade_id: str) -> str:
    """The answer cell as the student receives it (signature, docstring, ``raise NotImplementedError()``)."""
    nb = nbformat.read(REPO / "assignments" / assignment / f"{assignment}.ipynb", as_version=4)
    return next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def with_body(template: str, body: str) -> str:
    """The released answer cell with its ``raise NotImplementedError()`` replaced by ``body``."""
    stub = "    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert stub in template
    return template.replace(stub, textwrap.indent(textwrap.dedent(body), "    "))


def lines_of(function) -> range:
    lines, start = inspect.getsourcelines(function)
    return range(start, start + len(lines))


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_the_reference_solutions_are_not_flagged(assignment):
    answers = solution_answers(assignment)
    assert copied_from_reference(answers, ASSIGNMENTS[assignment]) == []
    assert copied_from_reference(answers, ["mbrl_course"]) == []  # nor against anything of the package


@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_the_untouched_release_is_not_flagged(assignment):
    answers = {grade_id: release_cell(assignment, grade_id) for grade_id in solution_answers(assignment)}
    assert copied_from_reference(answers, ["mbrl_course"]) == []


def test_a_pasted_method_of_the_reference_planner_is_flagged_with_its_file_and_lines():
    pasted = inspect.getsource(reference_cem.CEM._optimize).split("\n", 1)[1]  # the body, without the def line
    pasted = pasted.replace("  # u^n: (N, H, A)", "  # my samples").replace("alpha = self.momentum", "alpha  =  self.momentum")
    answers = solution_answers("01-planning")
    answers["cem"] = with_body(release_cell("01-planning", "cem"), pasted)
    flags = copied_from_reference(answers, ["mbrl_course.planning"])
    assert len(flags) == 1 and flags[0].startswith("cell cem: ")
    assert "copied verbatim from mbrl_course/planning/cem.py (lines " in flags[0]
    count, first, last = _parse(flags[0])
    assert count >= 10
    assert first in lines_of(reference_cem.CEM._optimize) and last in lines_of(reference_cem.CEM._optimize)


def test_a_pasted_function_with_its_docstring_is_flagged_among_other_cells():
    answers = solution_answers("02-kalman")
    answers["update_step"] = "import torch\n\n" + inspect.getsource(reference_kalman.update_step) + \
        "\n\ndef helper(x):\n    return x\n"
    flags = copied_from_reference(answers, ["mbrl_course.filters"])
    assert [f.split(":")[0] for f in flags] == ["cell update_step"]
    count, first, last = _parse(flags[0])
    assert "mbrl_course/filters/kalman.py" in flags[0]
    assert {first, last} <= set(lines_of(reference_kalman.update_step)) and count >= 4


def test_min_lines_sets_how_long_a_copy_must_be():
    pasted = "\n".join(inspect.getsource(reference_cem.CEM._optimize).splitlines()[4:7])  # 3 lines of the loop
    assert len(normalized_lines(textwrap.dedent(pasted))) == 3
    answers = {"cem": "def cem(objective):\n    mean = objective.mean\n" + textwrap.indent(textwrap.dedent(pasted), "    ")}
    assert copied_from_reference(answers, ["mbrl_course.planning"], min_lines=4) == []
    assert len(copied_from_reference(answers, ["mbrl_course.planning"], min_lines=3)) == 1
    with pytest.raises(ValueError, match="min_lines"):
        copied_from_reference(answers, ["mbrl_course.planning"], min_lines=0)


def test_comments_docstrings_blank_and_trivial_lines_do_not_count():
    source = '''
%matplotlib inline
def f(x):
    """A docstring

    over several lines.
    """
    # a comment
    import torch

    if x is None:   # trailing comment
        return x
    y  =   torch.zeros(3,  dtype=x.dtype)
    return y
'''
    texts = [line.text for line in normalized_lines(source)]
    assert texts == ["if x is None:", "y = torch.zeros(3, dtype=x.dtype)"]
    assert [line.number for line in normalized_lines(source)] == [11, 13]
    docstring_only = '"""' + inspect.getdoc(reference_cem.CEM) + '"""\n'
    assert copied_from_reference({"doc": docstring_only}, ["mbrl_course.planning"]) == []


def test_reference_modules_are_files_of_the_package_and_unknown_ones_are_named():
    files = reference_files("mbrl_course.planning")
    assert Path(reference_cem.__file__).resolve() in [f.resolve() for f in files]
    assert all(f.suffix == ".py" for f in files)
    assert reference_files("mbrl_course.filters.kalman") == [Path(reference_kalman.__file__)]
    with pytest.raises(ValueError, match="mbrl_course.nothing"):
        reference_files("mbrl_course.nothing")
    with pytest.raises(ValueError, match="no_such_package"):
        copied_from_reference({"a": "x = 1"}, ["no_such_package.planning"])


def _parse(flag: str) -> tuple[int, int, int]:
    count = int(flag.split(": ", 1)[1].split(" ", 1)[0])
    first, last = flag.rsplit("(lines ", 1)[1].rstrip(")").split("-")
    return count, int(first), int(last)
