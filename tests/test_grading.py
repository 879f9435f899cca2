"""The grading of the course, end to end: nbgrader release, autograde, export and feedback of
Assignment 1 on copies of the course in tmp_path, and the checks its test cells use.

End to end, one autograde run grades a class of generated submissions (built from the solution
notebook by targeted edits, each named after the student's bug or misbehaviour):
the reference solution (full marks), the untouched release (0), realistic wrong solutions (each
loses points where its bug is) and misbehaving submissions (an infinite loop, an exception, a
deleted test cell, an edited read-only cell, a renamed notebook, a file that is not JSON, stderr
output): each gets a score and a reason, and nobody stops the others.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import grading_helpers as helpers
import nbformat
import pytest
import torch
from grading_helpers import REPO, apply_edits, cell_by_id, nbgrader_id, new_course

from mbrl_course.grading import Report, instructor, pipeline
from mbrl_course.grading import planning as pt
from mbrl_course.grading.checks import expect_independent, reference_calls
from mbrl_course.grading.cli import add_course_parser, run_course
from mbrl_course.grading.report import GradingError

ph = helpers.hidden("planning")  # the instructor's hidden checks (solutions/hidden_checks/planning.py)

ASSIGNMENT = "01-planning"
NOTEBOOK = "01-planning.ipynb"
SOURCE = REPO / "solutions" / ASSIGNMENT / NOTEBOOK
TIMEOUT = 15  # seconds per cell while grading in these tests; every cell of the solution takes < 2 s
GRADED_CELLS = {"test_sample_uniform": 1, "test_random_shooting": 2, "test_sample_gaussian": 1,
                "test_select_elites": 2, "test_refit": 1, "test_cem": 3, "test_mpc_step": 2}
MAX_SCORE = sum(GRADED_CELLS.values())

CALL_REFERENCE = '''    from mbrl_course.planning import CEM

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    planner = CEM(horizon, action_low, action_high, population=population, elites=elites, iterations=iterations,
                  momentum=0.0, device="cpu", seed=seed, dtype=action_low.dtype)
    return planner.plan(objective)
'''
MPC_WITH_THE_REFERENCE = '''    from mbrl_course.planning import CEM

    plan = CEM(horizon=15, action_low=ACTION_LOW, action_high=ACTION_HIGH, population=100, elites=10,
               iterations=3, device="cpu", seed=0, dtype=state.dtype).plan(objective)
'''

# name -> (edits (solution cell, old text, new text), graded cells that must lose points, what the
# check that catches it says); every check named here but check_independent runs in the visible part
# of its test cell, so that the student sees the mistake named before handing in
BUGS = {
    "off_by_one_horizon": (
        [("mpc_step", "for t in range(horizon):", "for t in range(horizon - 1):")],
        {"test_mpc_step"}, ("check_mpc_objective", "off by one")),
    "std_not_refit": (
        [("cem", "mean, std = refit(select_elites(samples, returns, elites))",
          "mean, _ = refit(select_elites(samples, returns, elites))")],
        {"test_cem"}, ("check_cem_refits", "never refit")),
    "elites_by_lowest_return": (
        [("select_elites", "torch.topk(returns, elites).indices", "torch.topk(returns, elites, largest=False).indices")],
        {"test_select_elites", "test_cem"}, ("check_select_elites_top", r"SMALLEST returns \(argmin")),
    "bounds_ignored": (
        [("sample_gaussian", "return torch.clamp(mean + std * noise, action_low, action_high)", "return mean + std * noise")],
        {"test_sample_gaussian", "test_cem"}, ("check_sample_gaussian_shape", "outside")),
    "random_shooting_argmin": (
        [("random_shooting", "torch.argmax(returns)", "torch.argmin(returns)")],
        {"test_random_shooting"}, ("check_random_shooting_best", r"SMALLEST return \(argmin\)")),
    "uniform_ignores_low_bound": (
        [("sample_uniform", "return action_low + unit * (action_high - action_low)", "return unit * action_high")],
        {"test_sample_uniform", "test_random_shooting"}, ("check_sample_uniform_statistics", "mean")),
    "unbiased_std_in_refit": (
        [("refit", "correction=0", "correction=1")],
        {"test_refit"}, ("check_refit_std", r"σ uses 1/\(E-1\); CEM's refit uses 1/E")),
    "one_elite_too_few": (
        [("select_elites", "torch.topk(returns, elites).indices", "torch.argsort(returns, descending=True)[: elites - 1]")],
        {"test_select_elites", "test_cem"}, ("check_select_elites_count", "exactly")),
    "returns_whole_plan": (
        [("mpc_step", "return plan[0]", "return plan")],
        {"test_mpc_step"}, ("check_mpc_step_action", "whole plan")),
    "calls_the_reference_cem": (
        [("cem", None, CALL_REFERENCE)],
        {"test_cem"}, ("check_independent", "reference implementation")),
    "mpc_step_plans_with_the_reference_cem": (
        [("mpc_step", "    plan = planner(objective)  # (H, A)\n", MPC_WITH_THE_REFERENCE)],
        {"test_mpc_step"}, ("check_independent", "reference implementation")),
    "reward_arguments_swapped": (
        [("mpc_step", "reward_fn(current, actions[:, t], following)", "reward_fn(following, actions[:, t], current)")],
        {"test_mpc_step"}, ("check_mpc_objective", r"reward_fn\(i_\{t\+1\}, u_t, i_t\)")),
    "uniform_ignores_the_generator": (
        [("sample_uniform", "torch.rand(shape, generator=generator, ", "torch.rand(shape, ")],
        {"test_sample_uniform", "test_random_shooting"}, ("check_sample_uniform_generator", "generator")),
}
ZERO_CELLS = {"calls_the_reference_cem": "test_cem", "mpc_step_plans_with_the_reference_cem": "test_mpc_step"}
"""Bugs whose cell the veto zeroes: the function called the reference implementation."""


# ------------------------------------------------------------------------------ building submissions
def solution_namespace(edits=()) -> dict:
    """The solution notebook's functions (imports, model and solution cells), with ``edits`` applied."""
    return helpers.solution_namespace(SOURCE, edits, extra_cells=("imports", "model"))


def misbehaving(reference, release) -> dict[str, dict]:
    """Submissions that misbehave: student -> {file name: content}."""
    loop = nbformat.from_dict(json.loads(json.dumps(reference)))
    cell_by_id(loop, "sample_uniform").source = (
        cell_by_id(reference, "sample_uniform").source + "\n\n# try it out\nsteps = 0\nwhile steps < 10:\n    steps * 2\n"
    )
    crash = nbformat.from_dict(json.loads(json.dumps(reference)))
    cell_by_id(crash, "refit").source = "elite_samples.mean(dim=0)  # trying things out\n\n" + cell_by_id(crash, "refit").source
    deleted = nbformat.from_dict(json.loads(json.dumps(reference)))
    deleted.cells = [c for c in deleted.cells if nbgrader_id(c) != "test_refit"]
    edited = apply_edits(reference, BUGS["elites_by_lowest_return"][0])
    cell_by_id(edited, "test_select_elites").source = "2.0  # all good"
    cell_by_id(edited, "model").source = cell_by_id(edited, "model").source.replace("TARGET = 1.0", "TARGET = 0.0")
    noisy = apply_edits(reference, [("cem", "    action_dim = action_low.shape[0]\n",
                                "    import os, sys, warnings\n"
                                "    warnings.warn('cem: is this right?', UserWarning)\n"
                                "    print('debugging cem', file=sys.stderr)\n"
                                "    os.write(2, b'low-level stderr from cem\\n')\n"
                                "    action_dim = action_low.shape[0]\n")])
    return {
        "infinite_loop": {NOTEBOOK: loop},
        "exception_in_a_cell": {NOTEBOOK: crash},
        "deleted_test_cell": {NOTEBOOK: deleted},
        "edited_locked_cells": {NOTEBOOK: edited},
        "renamed_notebook": {"01-planning-Copy1.ipynb": reference},
        "not_json": {NOTEBOOK: '{"cells": [ this is not json'},
        "stderr_warnings": {NOTEBOOK: noisy},
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory, kernel_env):
    """A fresh course (release regenerated from solutions/) and one autograde run over a whole class."""
    course = new_course(tmp_path_factory.mktemp("graded") / "course", with_release=False)
    pipeline.release(course, ASSIGNMENT)
    release_nb = nbformat.read(course / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    reference = pipeline.fill_release(release_nb, nbformat.read(SOURCE, as_version=4))
    students = {"reference_solution": {NOTEBOOK: reference}, "untouched_release": {NOTEBOOK: release_nb}}
    students.update({name: {NOTEBOOK: apply_edits(reference, edits)} for name, (edits, _, _) in BUGS.items()})
    students.update(misbehaving(reference, release_nb))
    for student, files in students.items():
        pipeline.submit(course, student, ASSIGNMENT, files)
    results = pipeline.autograde(course, ASSIGNMENT, timeout=TIMEOUT)
    return SimpleNamespace(course=course, results={r.student: r for r in results}, students=sorted(students))


# ------------------------------------------------------------------------------ (a) and (f): the release
def test_release_regenerated_from_solutions_equals_committed_assignments(graded):
    assert pipeline.release_differences(REPO, graded.course, ASSIGNMENT) == []
    assert sorted(p.name for p in (REPO / "assignments").iterdir() if p.is_dir()) == pipeline.list_assignments(REPO)


def test_release_differences_notices_a_stale_release(tmp_path):
    course = new_course(tmp_path / "course", with_release=True)
    path = course / "assignments" / ASSIGNMENT / NOTEBOOK
    path.write_text(path.read_text().replace("Part 1", "Part One"))
    assert any("differs" in p for p in pipeline.release_differences(REPO, course, ASSIGNMENT))


def test_nothing_under_assignments_holds_solutions_or_hidden_tests():
    for assignment in pipeline.list_assignments(REPO):
        assert pipeline.release_problems(REPO, assignment) == []
    source = nbformat.read(SOURCE, as_version=4)
    secret_lines = set()
    for cell in source.cells:
        inside, outside = pipeline._marked_lines(cell.source)
        secret_lines |= inside
    for path in (REPO / "assignments").rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, path
            for needle in ("torch.topk(returns, elites)", "std(dim=0, correction=0)", "check_cem_converges",
                           "check_mpc_objective_models", "check_independent", "hidden_checks"):
                assert needle not in text, f"{path} leaks {needle!r}"
    assert len(secret_lines) > 30  # the oracle above really looked at solution and hidden-test lines


def test_release_problems_catches_a_leak(tmp_path):
    course = new_course(tmp_path / "course", with_release=True)
    path = course / "assignments" / ASSIGNMENT / NOTEBOOK
    nb = nbformat.read(path, as_version=4)
    cell_by_id(nb, "refit").source += "\n    std = elite_samples.std(dim=0, correction=0)"
    cell_by_id(nb, "test_refit").source += "\n### BEGIN HIDDEN TESTS"
    nbformat.write(nb, path)
    problems = pipeline.release_problems(course, ASSIGNMENT)
    assert any("leaks" in p and "correction=0" in p for p in problems)
    assert any("BEGIN HIDDEN TESTS" in p for p in problems)


def test_release_links_and_kernel(graded):
    nb = nbformat.read(REPO / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    assert f"assignments/{ASSIGNMENT}/{NOTEBOOK}" in nb.cells[0].source
    assert "solutions/" not in nb.cells[0].source
    assert nb.metadata.kernelspec.name == "python3"


# ------------------------------------------------------------------------------ (b), (c), (d)
def test_reference_solution_gets_full_marks(graded):
    result = graded.results["reference_solution"]
    assert (result.status, result.reason) == ("graded", "")
    assert result.max_score == MAX_SCORE >= 10
    assert result.score == MAX_SCORE
    assert result.cells == {name: float(points) for name, points in GRADED_CELLS.items()}


def test_untouched_release_gets_zero(graded):
    result = graded.results["untouched_release"]
    assert result.status == "graded"
    assert result.score == 0
    assert set(result.cells) == set(GRADED_CELLS) and not any(result.cells.values())


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_wrong_solution_loses_points_where_its_bug_is(graded, bug):
    _, losing, _ = BUGS[bug]
    result = graded.results[bug]
    assert result.status == "graded"
    for name, points in GRADED_CELLS.items():
        if name in losing:
            assert result.cells[name] < points, f"{bug}: {name} should lose points"
        else:
            assert result.cells[name] == points, f"{bug}: {name} should keep its points"
    assert result.score < MAX_SCORE
    if bug in ZERO_CELLS:
        assert result.cells[ZERO_CELLS[bug]] == 0


CHECKS = {
    "check_mpc_objective": lambda ns: pt.check_mpc_objective(ns["mpc_step"], seed=1),
    "check_cem_refits": lambda ns: pt.check_cem_refits(ns["cem"], seed=2),
    "check_select_elites_top": lambda ns: pt.check_select_elites_top(ns["select_elites"], seed=3),
    "check_sample_gaussian_shape": lambda ns: pt.check_sample_gaussian_shape(ns["sample_gaussian"], seed=4),
    "check_random_shooting_best": lambda ns: pt.check_random_shooting_best(ns["random_shooting"], seed=5),
    "check_sample_uniform_statistics": lambda ns: pt.check_sample_uniform_statistics(ns["sample_uniform"], seed=6),
    "check_sample_uniform_generator": lambda ns: pt.check_sample_uniform_generator(ns["sample_uniform"], seed=6),
    "check_refit_std": lambda ns: pt.check_refit_std(ns["refit"], seed=7),
    "check_select_elites_count": lambda ns: pt.check_select_elites_count(ns["select_elites"], seed=8),
    "check_mpc_step_action": lambda ns: pt.check_mpc_step_action(
        ns["mpc_step"], ns["model"], ns["reward_fn"], torch.zeros(2), action_dim=1, seed=9),
}
"""The check that catches each bug of BUGS, called directly (``check_independent`` takes the function's name)."""


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_wrong_solution_is_told_what_is_wrong(bug):
    edits, _, (check, phrase) = BUGS[bug]
    correct, wrong = solution_namespace(), solution_namespace(edits)
    if check == "check_independent":
        (name,) = {grade_id for grade_id, _, _ in edits}
        call = lambda ns: pt.check_independent(name, ns[name], seed=10)  # noqa: E731
    else:
        call = CHECKS[check]
    call(correct)  # the correct solution passes this check ...
    with pytest.raises(GradingError, match=phrase):  # ... the wrong one fails it, saying why
        call(wrong)


@pytest.mark.parametrize("bug", sorted(b for b, (_, _, (check, _)) in BUGS.items() if check != "check_independent"))
def test_each_mistake_is_named_by_a_visible_check(bug):
    """The student sees the message before handing in: the check that names the bug runs in the visible part
    of the test cell of the function that has it."""
    edits, _, (check, _) = BUGS[bug]
    nb = nbformat.read(SOURCE, as_version=4)
    (function,) = {grade_id for grade_id, _, _ in edits}
    assert check in helpers.visible_calls(cell_by_id(nb, f"test_{function}").source, "planning_tests")


def test_visible_checks_carry_at_least_half_of_every_cells_points():
    nb = nbformat.read(SOURCE, as_version=4)
    for name in GRADED_CELLS:
        visible, hidden = helpers.part_weights(cell_by_id(nb, name).source)
        assert visible >= hidden > 0, f"{name}: visible weight {visible}, hidden {hidden}"


def test_the_solution_passes_every_check_across_seeds():
    ns = solution_namespace()
    for seed in (101, 202):
        pt.check_sample_uniform_statistics(ns["sample_uniform"], seed)
        pt.check_sample_uniform_generator(ns["sample_uniform"], seed)
        pt.check_random_shooting_best(ns["random_shooting"], seed)
        ph.check_random_shooting_vs_reference(ns["random_shooting"], seed)
        ph.check_random_shooting_generator(ns["random_shooting"], seed)
        pt.check_sample_gaussian_statistics(ns["sample_gaussian"], seed)
        pt.check_sample_gaussian_generator(ns["sample_gaussian"], seed)
        pt.check_select_elites_top(ns["select_elites"], seed)
        pt.check_refit_std(ns["refit"], seed)
        pt.check_cem_refits(ns["cem"], seed)
        pt.check_cem_initial_distribution(ns["cem"], seed)
        ph.check_cem_converges(ns["cem"], seed, runs=3, beyond_bounds=True)
        ph.check_cem_generator(ns["cem"], seed)
        pt.check_mpc_objective(ns["mpc_step"], seed)
        ph.check_mpc_objective_models(ns["mpc_step"], seed)
        for name in ("sample_uniform", "random_shooting", "sample_gaussian", "select_elites", "refit", "cem", "mpc_step"):
            pt.check_independent(name, ns[name], seed)


# ------------------------------------------------------------------------------ visible and hidden checks
def test_the_visible_checks_offer_no_oracle():
    """Nothing a student imports computes an answer for inputs of the student's choosing: the oracles,
    the comparisons with the reference and the hidden-only checks live in solutions/hidden_checks."""
    for name in ("rollout_returns", "cem_errors", "check_cem_converges", "check_random_shooting_vs_reference",
                 "check_mpc_closed_loop", "check_mpc_objective_models"):
        assert not hasattr(pt, name) and hasattr(ph, name), name
    assert helpers.hidden_only_names(ph).isdisjoint(dir(pt))


def test_the_visible_checks_never_import_the_reference():
    """Graded notebooks run where mbrl_course.planning is absent: neither importing the visible checks nor
    running the visible part of every test cell on the solution imports it."""
    assert not any(m.startswith("mbrl_course.planning") for m in helpers.imports_in_source(Path(pt.__file__)))
    modules, _ = helpers.run_fresh("import mbrl_course.grading.planning")
    assert "mbrl_course.grading.planning" in modules and "mbrl_course.planning" not in modules
    modules, out = helpers.run_fresh(helpers.visible_code(SOURCE, ("imports", "model")))
    assert "[FAIL]" not in out and out.count("[PASS]") >= 2 * len(GRADED_CELLS), out
    assert "mbrl_course.planning" not in modules


def test_the_hidden_tests_load_their_checks_and_the_release_names_none_of_them():
    nb = nbformat.read(SOURCE, as_version=4)
    for name in GRADED_CELLS:
        visible, _, hidden_part = cell_by_id(nb, name).source.partition(helpers.HIDDEN_MARKER)
        assert "planning_hidden" not in visible and "hidden_checks" not in visible
        if "planning_hidden." in hidden_part:
            assert 'planning_hidden = hidden_checks("planning")' in hidden_part
    assert helpers.secret_lines_in(REPO / "assignments" / ASSIGNMENT / NOTEBOOK, SOURCE) == []
    text = (REPO / "assignments" / ASSIGNMENT / NOTEBOOK).read_text()
    for name in helpers.hidden_only_names(ph) | {"hidden_checks", "planning_hidden", "check_independent"}:
        assert name not in text, f"the release names the hidden {name!r}"


def test_a_students_copy_of_the_course_has_no_hidden_checks(tmp_path, monkeypatch):
    course = new_course(tmp_path / "course", with_release=True)
    shutil.rmtree(course / "solutions")  # what a student has: the release, no solutions
    monkeypatch.delenv(instructor.ENV_VAR, raising=False)
    monkeypatch.setattr(instructor, "_root", None)  # a root the grading pipeline set in this process
    monkeypatch.chdir(course / "assignments" / ASSIGNMENT)
    with pytest.raises(instructor.HiddenChecksMissing, match="instructor"):
        instructor.hidden_checks("planning")


# ------------------------------------------------------------------------------ (e) misbehaving submissions
def test_infinite_loop_times_out_and_the_rest_is_graded(graded):
    result = graded.results["infinite_loop"]
    assert result.status == "graded"
    assert "ran too long" in result.reason or "interrupted" in result.reason
    assert result.score == MAX_SCORE  # the loop sat after the function: every test still ran


def test_exception_in_a_cell_costs_the_cells_that_need_it(graded):
    result = graded.results["exception_in_a_cell"]
    assert result.status == "graded"
    assert "refit raised NameError" in result.reason
    assert result.cells["test_refit"] == 0 and result.cells["test_cem"] == 0
    assert result.cells["test_select_elites"] == GRADED_CELLS["test_select_elites"]


def test_deleted_test_cell_is_restored_and_graded(graded):
    result = graded.results["deleted_test_cell"]
    assert result.status == "graded"
    assert "test_refit" in result.reason and "restored" in result.reason
    assert result.cells["test_refit"] == GRADED_CELLS["test_refit"]
    assert result.score == MAX_SCORE


def test_edited_read_only_cells_are_restored(graded):
    result = graded.results["edited_locked_cells"]
    assert result.status == "graded"
    assert "test_select_elites" in result.reason and "model" in result.reason
    assert result.cells["test_select_elites"] < GRADED_CELLS["test_select_elites"]  # "2.0" did not stand
    assert result.cells["test_mpc_step"] == GRADED_CELLS["test_mpc_step"]  # the model came back (TARGET = 1)


@pytest.mark.parametrize(("student", "phrase"), [("renamed_notebook", "renamed"), ("not_json", "not a readable notebook")])
def test_ungradable_submission_gets_zero_and_a_reason(graded, student, phrase):
    result = graded.results[student]
    assert result.status == "failed"
    assert phrase in result.reason
    assert result.score == 0 and result.max_score == MAX_SCORE


def test_stderr_output_does_not_cost_points(graded):
    result = graded.results["stderr_warnings"]
    assert (result.status, result.score) == ("graded", MAX_SCORE)
    nb = nbformat.read(graded.course / "autograded" / "stderr_warnings" / ASSIGNMENT / NOTEBOOK, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "is this right?" in text  # the warning is shown to the student, not hidden


def test_every_student_is_in_the_gradebook_and_a_regrade_loses_nobody(graded, tmp_path):
    course = tmp_path / "course"
    shutil.copytree(graded.course, course)
    before = pipeline.read_scores(course, ASSIGNMENT)
    assert sorted(before) == graded.students
    folder = course / "submitted" / "renamed_notebook" / ASSIGNMENT
    (folder / "01-planning-Copy1.ipynb").rename(folder / NOTEBOOK)  # the instructor fixes the name ...
    (regraded,) = pipeline.autograde(course, ASSIGNMENT, ["renamed_notebook"], timeout=TIMEOUT)  # ... and regrades
    assert (regraded.status, regraded.score, regraded.reason) == ("graded", MAX_SCORE, "")
    after = pipeline.read_scores(course, ASSIGNMENT)
    assert {k: v for k, v in after.items() if k != "renamed_notebook"} == {
        k: v for k, v in before.items() if k != "renamed_notebook"}
    report = pipeline.load_report(course, ASSIGNMENT)
    assert sorted(report) == graded.students and report["renamed_notebook"]["status"] == "graded"


# ------------------------------------------------------------------------------ export and feedback
def test_export_csv_has_every_student_with_status_and_reason(graded, tmp_path):
    out = pipeline.export_grades(graded.course, ASSIGNMENT, tmp_path / "grades.csv")
    rows = {row["student_id"]: row for row in csv.DictReader(out.open())}
    assert sorted(rows) == graded.students
    assert rows["reference_solution"]["score"] == str(MAX_SCORE)
    assert rows["untouched_release"]["score"] == "0"
    assert rows["not_json"]["status"] == "failed" and "not a readable notebook" in rows["not_json"]["reason"]
    for name, points in GRADED_CELLS.items():
        assert rows["reference_solution"][name] == str(points)
    assert all(float(r["score"]) == pytest.approx(graded.results[s].score, abs=1e-4) for s, r in rows.items())


def test_feedback_html_for_graded_and_ungradable_students(graded, tmp_path):
    course = tmp_path / "course"
    shutil.copytree(graded.course, course)
    paths = pipeline.generate_feedback(course, ASSIGNMENT, ["reference_solution", "std_not_refit", "not_json"])
    names = {(p.parent.parent.name, p.name) for p in paths}
    assert ("reference_solution", "01-planning.html") in names
    assert ("std_not_refit", "01-planning.html") in names
    assert ("not_json", "grading-problem.html") in names
    html = (course / "feedback" / "std_not_refit" / ASSIGNMENT / "01-planning.html").read_text()
    assert "never refit" in html  # the student reads what was wrong
    assert "hidden_checks" not in html and "HIDDEN TESTS" not in html  # but not the hidden tests' code
    assert "not a readable notebook" in (course / "feedback" / "not_json" / ASSIGNMENT / "grading-problem.html").read_text()


# ------------------------------------------------------------------------------ the commands
def test_course_command_validate_release_and_errors(tmp_path, kernel_env, capsys, monkeypatch):
    import argparse

    parser = argparse.ArgumentParser(prog="mbrl-course")
    add_course_parser(parser.add_subparsers(dest="command"))
    course = new_course(tmp_path / "course", with_release=True)
    monkeypatch.delenv(instructor.ENV_VAR, raising=False)  # validate's copy of the course brings its hidden checks
    assert run_course(parser.parse_args(["course", "validate", "--course-dir", str(course), "--timeout", str(TIMEOUT)])) == 0
    assert f"{ASSIGNMENT}: OK" in capsys.readouterr().out
    assert not (course / "gradebook.db").exists()  # validate works on a temporary copy
    assert run_course(parser.parse_args(["course", "autograde", "nope", "--course-dir", str(course)])) == 1
    assert "known assignments: 01-planning" in capsys.readouterr().err
    assert run_course(parser.parse_args(["course", "release", "--course-dir", str(course)])) == 0
    assert pipeline.release_differences(REPO, course, ASSIGNMENT) == []


# ------------------------------------------------------------------------------ the pieces of a test cell
def test_report_partial_credit_messages_and_veto(capsys):
    report = Report("f", points=3)
    with report.part("a"):
        pass
    with report.part("b", weight=2):
        raise GradingError("b is wrong: look at the bounds")
    assert report.score() == pytest.approx(1.0)
    out = capsys.readouterr().out
    assert "[PASS] f: a" in out and "[FAIL] f: b" in out and "look at the bounds" in out

    def student():
        raise NotImplementedError()

    report = Report("g", points=2)
    with report.part("runs"):
        student()
    assert report.score() == 0 and "not implemented yet" in capsys.readouterr().out

    report = Report("h", points=2)
    with report.part("x"):
        pass
    with report.part("independent", veto=True):
        raise GradingError("called the reference")
    assert report.score() == 0

    with pytest.raises(ValueError, match="points"):
        Report("bad", points=0)


def test_report_names_the_students_line_and_keeps_stderr_off_stderr(capsys):
    def student(x):
        import warnings

        warnings.warn("careful", UserWarning, stacklevel=1)
        print("noise", file=sys.stderr)
        return x.shape[5]

    report = Report("f", points=1)
    with report.part("works"):
        student(torch.zeros(2))
    assert report.score() == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "IndexError" in captured.out and "return x.shape[5]" in captured.out
    assert "careful" in captured.out and "noise" in captured.out


def test_stderr_to_stdout_keeps_the_points_of_a_cell_with_warnings():
    from nbgrader.utils import determine_grade

    from mbrl_course.grading.preprocessors import StderrToStdout

    cell = nbformat.v4.new_code_cell("report.score()")
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "points": 2, "solution": False, "locked": True}
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="UserWarning: something\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": "1.5"}, execution_count=1)]
    assert determine_grade(cell)[0] == 0  # what nbgrader would do
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb, _ = StderrToStdout()(nb, {})
    assert determine_grade(nb.cells[0])[0] == 1.5
    assert nb.cells[0].outputs[0]["text"] == "UserWarning: something\n"
    error = nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=[])
    nb.cells[0].outputs = [error]
    nb, _ = StderrToStdout()(nb, {})
    assert determine_grade(nb.cells[0])[0] == 0  # errors still score 0


def test_reference_calls_are_detected_however_imported():
    import mbrl_course.planning.cem as cem_module
    from mbrl_course.planning import RandomShooting

    def objective(u):
        return -(u**2).sum(dim=(1, 2))

    with reference_calls() as seen:
        torch.randn(3).sum()  # torch is not the reference
    assert seen == []
    with reference_calls() as seen:
        cem_module.CEM(2, [-1.0], [1.0], population=10, elites=2, iterations=1, device="cpu", seed=0).plan(objective)
    assert any("cem.py" in s for s in seen)
    with pytest.raises(GradingError, match="reference implementation"):
        expect_independent("rs", lambda: RandomShooting(2, [-1.0], [1.0], population=5, device="cpu", seed=0).plan(objective))
    assert sys.getprofile() is None  # the hook is removed afterwards


def test_graded_cells_declare_their_points_and_hide_tests():
    nb = nbformat.read(SOURCE, as_version=4)
    graded_cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    assert {c.metadata.nbgrader.grade_id: c.metadata.nbgrader.points for c in graded_cells} == GRADED_CELLS
    for cell in graded_cells:
        points = cell.metadata.nbgrader.points
        assert f'points={points})' in cell.source, f"{cell.metadata.nbgrader.grade_id}: Report points != cell points"
        assert "### BEGIN HIDDEN TESTS" in cell.source and cell.source.rstrip().endswith("report.score()")
        assert cell.metadata.nbgrader.locked
