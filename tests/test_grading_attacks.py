"""Submissions that try to game the grade or harm the grader, built from the released notebooks.

The issue that asked for the sandbox listed three (an A2 that returns the grader's own oracles,
an A2 that switches off the profiler and calls ``mbrl_course.filters``, an A1 that patches
``Report.score``); the sandbox's own attacks follow (a fork bomb, a memory hog, ``rm -rf ~``, a
socket, signals to the grader, writes outside the submission). Each is autograded next to honest
submissions: the attack scores 0 on what it games, the honest grades are exactly what they are
alone, and the reason column says what the sandbox refused or which limit stopped it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import nbformat
import pytest
from grading_helpers import apply_edits, cell_by_id, new_course

from mbrl_course.grading import pipeline

pytestmark = pytest.mark.usefixtures("kernel_env")

REPO = Path(__file__).resolve().parents[1]
A1, A2 = "01-planning", "02-kalman"
TIMEOUT = 60

TAMPER = "from mbrl_course.grading import Report\nReport.score = lambda self: float(self.points)\n"
PROFILE_OFF_PLANNING = '''import sys
sys.setprofile(None)
import mbrl_course.planning as reference


def random_shooting(objective, horizon, action_low, action_high, population, generator):
    sys.setprofile(None)
    planner = reference.RandomShooting(horizon=horizon, population=population, generator=generator)
    return planner.plan(objective, action_low, action_high)
'''
EXEC_SOURCE = '''import os
import mbrl_course

_folder = os.path.join(os.path.dirname(mbrl_course.__file__), "planning")
_stolen = {}
for _name in ("base.py", "cem.py"):
    exec(open(os.path.join(_folder, _name)).read(), _stolen)


def cem(objective, horizon, action_low, action_high, population, elites, iterations, generator,
        init_mean=None, init_std=None):
    planner = _stolen["CEM"](horizon=horizon, population=population, elites=elites, iterations=iterations,
                             generator=generator)
    return planner.plan(objective, action_low, action_high)
'''
HARM = '''import os, socket, torch
attempts = {}
for name, attack in {
    "fork bomb": lambda: [os.fork() for _ in range(100)],
    "rm -rf ~": lambda: os.system("rm -rf ~"),
    "socket": lambda: socket.create_connection(("8.8.8.8", 53), timeout=2),
    "memory": lambda: torch.empty(10**11),
    "kill the grader": lambda: os.kill(os.getpid() + 1, 9),
    "kill its group": lambda: os.killpg(os.getpgrp() + 12345, 9),
    "write the gradebook": lambda: open(os.path.expanduser("~/../../gradebook.db"), "w").write("x"),
}.items():
    try:
        attack()
        attempts[name] = "got through"
    except Exception as err:
        attempts[name] = type(err).__name__
print(attempts)
'''
ORACLE = {
    "update_step": "def update_step(mu, Sigma, y, C, D):\n    return kalman_tests.condition_oracle(mu, Sigma, y, C, D)\n",
    "log_predictive": "def log_predictive(mu, Sigma, y, C, D):\n"
                      "    return kalman_tests.log_predictive_oracle(mu, Sigma, y, C, D)\n",
    "kalman_log_likelihood": "def kalman_log_likelihood(Y, m0, S0, E, F, C, D):\n"
                             "    return kalman_tests.joint_log_likelihood(Y, m0, S0, E, F, C, D)\n",
    "fit": "def fit(log_likelihood, initial_params, num_steps, learning_rate):\n"
           "    return kalman_tests.reference_fit(log_likelihood, initial_params, num_steps, learning_rate)\n",
    "predict_step": "import sys\n\n\ndef predict_step(m, S, E, F):\n    sys.setprofile(None)\n"
                    "    from mbrl_course.grading.instructor import hidden_checks\n"
                    "    return hidden_checks('kalman').predict_oracle(m, S, E, F)\n",
}
PROFILE_OFF_FILTERS = {
    name: f"import sys\n\n\ndef {name}(*args):\n    sys.setprofile(None)\n    import mbrl_course.filters as f\n"
          f"    return f.{name}(*args)\n"
    for name in ("predict_step", "update_step")
}


def _replace(nb, sources: dict[str, str]):
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    for grade_id, source in sources.items():
        cell_by_id(nb, grade_id).source = source
    return nb


def _prepend(nb, grade_id: str, code: str):
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    cell = cell_by_id(nb, grade_id)
    cell.source = code + "\n" + cell.source
    return nb


def _free_cell(nb, code: str):
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(nb), as_version=4))
    nb.cells.append(nbformat.v4.new_code_cell(code))
    return nb


def _grade(course: Path, assignment: str, students: dict) -> dict:
    pipeline.release(course, assignment)
    name = f"{assignment}.ipynb"
    release = nbformat.read(course / "assignments" / assignment / name, as_version=4)
    reference = pipeline.fill_release(release, nbformat.read(REPO / "solutions" / assignment / name, as_version=4))
    for student, build in students.items():
        pipeline.submit(course, student, assignment, {name: build(release, reference)})
    results = {r.student: r for r in pipeline.autograde(course, assignment, timeout=TIMEOUT)}
    csv_path = pipeline.export_grades(course, assignment)
    with csv_path.open() as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    return {"results": results, "rows": rows, "course": course}


@pytest.fixture(scope="module")
def planning(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("attacks") / "course", with_release=False)
    students = {
        "reference_solution": lambda release, reference: reference,
        "honest_unbiased_std": lambda release, reference: apply_edits(
            reference, [("refit", "correction=0", "correction=1")]),
        "tamper_score": lambda release, reference: _prepend(release, "sample_uniform", TAMPER),
        "tamper_on_a_solution": lambda release, reference: _prepend(
            apply_edits(reference, [("refit", "correction=0", "correction=1")]), "sample_uniform", TAMPER),
        "profile_off_reference": lambda release, reference: _replace(
            reference, {"random_shooting": PROFILE_OFF_PLANNING}),
        "exec_reference_source": lambda release, reference: _replace(reference, {"cem": EXEC_SOURCE}),
        "harmful_free_cell": lambda release, reference: _free_cell(reference, HARM),
        "pasted_reference": lambda release, reference: _prepend(
            reference, "cem", (REPO / "mbrl_course" / "planning" / "cem.py").read_text()),
        "memory_hog_first": lambda release, reference: _prepend(reference, "sample_uniform",
                                                                "import torch\nhog = torch.empty(10**11)"),
    }
    return _grade(course, A1, students)


def test_an_honest_class_keeps_its_grades(planning):
    results = planning["results"]
    assert (results["reference_solution"].score, results["reference_solution"].max_score) == (12, 12)
    honest = results["honest_unbiased_std"]
    assert 0 < honest.cells["test_refit"] < 1
    assert honest.score == pytest.approx(12 - 1 + honest.cells["test_refit"])


def test_patching_report_score_gains_nothing(planning):
    results = planning["results"]
    assert results["tamper_score"].score == 0  # the release's blank answers, however the score is patched
    assert results["tamper_on_a_solution"].cells == results["honest_unbiased_std"].cells


def test_calling_the_reference_with_the_profiler_off_scores_zero_there(planning):
    result = planning["results"]["profile_off_reference"]
    assert result.cells["test_random_shooting"] == 0
    assert result.score == 12 - 2
    assert "mbrl_course.planning" in result.reason


def test_executing_the_reference_source_scores_zero_there(planning):
    result = planning["results"]["exec_reference_source"]
    assert result.cells["test_cem"] == 0 and result.score == 12 - 3
    assert "reading the reference implementation" in result.reason


def test_harm_costs_only_the_student_and_is_reported(planning):
    result = planning["results"]["harmful_free_cell"]
    assert (result.status, result.score) == ("graded", 12)
    for what in ("starting another program", "network access", "sending a signal", "writing outside"):
        assert what in result.reason, what
    course = planning["course"]
    assert (course / "gradebook.db").stat().st_size > 1000 and (course / "solutions").is_dir()
    assert Path.home().is_dir()


def test_a_memory_hog_loses_its_cell_and_the_csv_says_so(planning):
    result = planning["results"]["memory_hog_first"]
    assert result.cells["test_sample_uniform"] == 0 and result.cells["test_cem"] == 3
    assert "memory limit" in result.reason
    assert "memory limit" in planning["rows"]["memory_hog_first"]["reason"]


@pytest.fixture(scope="module")
def kalman(tmp_path_factory):
    course = new_course(tmp_path_factory.mktemp("attacks-kalman") / "course", with_release=False)
    students = {
        "reference_solution": lambda release, reference: reference,
        "oracle": lambda release, reference: _replace(release, ORACLE),
        "profile_off_filters": lambda release, reference: _replace(reference, PROFILE_OFF_FILTERS),
    }
    return _grade(course, A2, students)


def test_the_graders_oracles_are_not_there_to_call(kalman):
    results = kalman["results"]
    assert results["reference_solution"].score == results["reference_solution"].max_score == 12
    assert results["oracle"].score == 0


def test_switching_off_the_profiler_does_not_unlock_the_reference(kalman):
    result = kalman["results"]["profile_off_filters"]
    assert result.cells["test_predict_step"] == 0 and result.cells["test_update_step"] == 0
    assert "importing mbrl_course.filters" in result.reason


def test_pasting_the_reference_source_is_flagged_for_the_instructor(planning):
    result = planning["results"]["pasted_reference"]
    assert "possible copy" in result.reason and "mbrl_course/planning/cem.py" in result.reason
    assert "possible copy" not in planning["results"]["reference_solution"].reason
