"""The grading of Assignment 6, "Dreamer's λ-returns and losses, PlaNet's latent objective", end to end.

One nbgrader autograde run (on a copy of the course in tmp_path) grades a class built from the solution
notebook: the reference solution (full marks), the untouched release (0 in every cell), an alternative correct
solution (λ-returns by n-step mixtures, the vectorised form by a triangular matrix of log-free products, the
weights by a loop-free mask, the objective by a manual tiling of the state: full marks) and realistic wrong
solutions, attacks included (the reference called, the worked example hard-coded, a test cell edited). Each
wrong solution (a row of BUGS) loses points in the cells where its bug is, keeps them elsewhere, and the graded
notebook names its mistake there (more mistakes are graded by direct calls of the checks only: MORE_BUGS). The
checks are also called directly: each wrong solution is told what is wrong, every catalogued mistake is
recognised by its check, the solution passes every check on other seeds, and the instructor's oracles agree with
the reference implementation (mbrl_course.rl.actor_critic, mbrl_course.planning.latent) and with definitions
written here (the mixture of n-step returns). The visible checks, installed with the package, import no
reference module; the hidden ones are loaded from solutions/hidden_checks.
"""

from __future__ import annotations

import ast
import linecache
import re
from pathlib import Path
from types import SimpleNamespace

import grading_helpers as helpers
import nbformat
import pytest
import torch
from grading_helpers import REPO, apply_edits, cell_by_id, new_course, reference_phrase

from mbrl_course.grading import dreamer as dt
from mbrl_course.grading import instructor, pipeline, remote
from mbrl_course.grading.report import GradingError
from mbrl_course.planning.latent import latent_return_objective
from mbrl_course.rl.actor_critic import actor_loss, discount_weights, lambda_returns, value_loss

ASSIGNMENT = "06-dreamer"
NOTEBOOK = "06-dreamer.ipynb"
SOURCE = REPO / "solutions" / ASSIGNMENT / NOTEBOOK
TIMEOUT = 60  # seconds per cell while grading here; the slowest test cell takes about a second
GRADED_CELLS = {"test_lambda_returns": 3, "test_lambda_returns_vectorised": 2, "test_value_loss": 3,
                "test_actor_loss": 2, "test_latent_objective": 3}
MAX_SCORE = sum(GRADED_CELLS.values())
REFERENCE_PACKAGES = ("mbrl_course.rl.actor_critic", "mbrl_course.planning.latent", "mbrl_course.agents")
STUDENT_FUNCTIONS = ("lambda_returns", "lambda_returns_vectorised", "value_loss", "actor_loss", "latent_objective")
DTYPE = torch.float64

RECURSION = "continuation[t] * ((1 - lam) * values[t + 1] + lam * following)"
LOOP_BODY = '''    following, out = values[-1], []
    for t in range(rewards.shape[0] - 1, -1, -1):
        following = rewards[t] + continuation[t] * ((1 - lam) * values[t + 1] + lam * following)
        out.append(following)
    return torch.stack(out[::-1])
'''
WEIGHTS_LINE = "weights = torch.cat([torch.ones_like(c[:1]), torch.cumprod(c[:-1], dim=0)])"

# name -> (edits (cell, old text, new text), graded cells that must lose points, (check, phrase))
BUGS = {
    "bootstraps_from_the_current_state": (
        [("lambda_returns", "values[t + 1]", "values[t]")], {"test_lambda_returns"},
        ("returns_recursion", r"bootstrap from v\(s_t\)")),
    "continuation_missing_at_termination": (
        [("lambda_returns", RECURSION, "continuation[t] * (1 - lam) * values[t + 1] + lam * following")],
        {"test_lambda_returns"}, ("returns_recursion", "c_t multiplies only the")),
    "value_loss_hard_codes_the_worked_example": (
        [("value_loss", None, "    return torch.tensor(0.525, dtype=values.dtype)\n")],
        {"test_value_loss"}, ("value_gradients", "carries no gradient to the values")),
    "lambda_one_drops_the_bootstrap": (
        [("lambda_returns_vectorised", "    mix[-1] = 1.0  # the last step bootstraps fully from v(s_H)\n", "")],
        {"test_lambda_returns_vectorised"}, ("vectorised_recursion", r"weights v\(s_H\) by \(1 − λ\)")),
    "vectorised_calls_the_reference": (
        [("lambda_returns_vectorised", None, "    from mbrl_course.rl.actor_critic import lambda_returns_vectorised as ref\n\n"
          "    return ref(rewards, values, continuation, lam)\n")],
        {"test_lambda_returns_vectorised"},
        ("independent_vectorised", reference_phrase("mbrl_course.rl.actor_critic"))),
    "gradient_through_the_value_target": (
        [("value_loss", "returns.detach()", "returns")], {"test_value_loss"},
        ("value_gradients", "gradient flows into the target")),
    "actor_loss_sign_flipped": (
        [("actor_loss", "return -(weights * returns).mean()", "return (weights * returns).mean()")],
        {"test_actor_loss"}, ("actor_example", "wrong sign")),
    "actor_weights_not_detached_and_the_test_cell_edited": (
        [("actor_loss", "c = continuation.detach()", "c = continuation"),
         ("test_actor_loss", "report.score()", "report.score = lambda: 2.0\nreport.score()")],
        {"test_actor_loss"}, ("actor_gradients", "gradient flows into the continuation")),
    "objective_sums_over_the_candidates": (
        [("latent_objective", "imagined.rewards.sum(-1)", "imagined.rewards.sum(0)")], {"test_latent_objective"},
        ("objective_constant", "summed over the candidates")),
    "objective_starts_from_the_prior": (
        [("latent_objective", "posterior, _ = model.observe_step(", "_, posterior = model.observe_step(")],
        {"test_latent_objective"}, ("objective_observation", "does not change when the new observation")),
}
VETOED = {"vectorised_calls_the_reference": "test_lambda_returns_vectorised"}
MORE_BUGS = {  # graded by direct calls of the checks only: (edits, check, phrase)
    "vectorised_calls_the_loop_version": ([("lambda_returns_vectorised", None,
                                            "    return lambda_returns(rewards, values, continuation, lam)\n")],
                                          "no_loop", "calls lambda_returns, the loop version"),
    "objective_from_the_unrepeated_state": ([("latent_objective", "start = posterior.repeat(action_sequences.shape[0])",
                                              "start = posterior")], "objective_constant",
                                            "one copy of the filtered state per candidate"),
    "lambda_returns_calls_the_reference": ([("lambda_returns", None, "    from mbrl_course.rl.actor_critic import "
                                             "lambda_returns as reference\n\n"
                                             "    return reference(rewards, values, continuation, lam)\n")],
                                           "independent_returns", reference_phrase("mbrl_course.rl.actor_critic")),
    "lambda_swapped": ([("lambda_returns", "(1 - lam) * values[t + 1] + lam * following",
                         "lam * values[t + 1] + (1 - lam) * following")], "returns_recursion", "swapped"),
    "reward_discounted": ([("lambda_returns", "rewards[t] + continuation[t] * (",
                            "continuation[t] * rewards[t] + continuation[t] * (")], "returns_exact", "discount the reward"),
    "continuation_ignored": ([("lambda_returns", RECURSION, "((1 - lam) * values[t + 1] + lam * following)")],
                             "returns_exact", "continuation c_t is missing"),
    "vectorised_with_a_for_loop": ([("lambda_returns_vectorised", None, LOOP_BODY)], "no_loop", "has a for loop"),
    "value_loss_summed": ([("value_loss", ".mean()", ".sum()")], "value_gradients", "N times too large"),
    "value_loss_without_weights": ([("value_loss", "(weights * 0.5 *", "(0.5 *")], "value_gradients",
                                   "weights w_t are missing"),
    "value_loss_weights_include_c_t": ([("value_loss", WEIGHTS_LINE, "weights = torch.cumprod(c, dim=0)")],
                                       "value_exact", "include c_t itself"),
    "actor_weights_not_cumulative": ([("actor_loss", WEIGHTS_LINE,
                                       "weights = torch.cat([torch.ones_like(c[:1]), c[:-1]])")],
                                     "actor_exact", "not cumulative"),
    "actor_returns_detached": ([("actor_loss", "(weights * returns)", "(weights * returns.detach())")],
                               "actor_gradients", "no gradient to the returns"),
    "objective_averages_over_the_horizon": ([("latent_objective", "imagined.rewards.sum(-1)",
                                              "imagined.rewards.mean(-1)")], "objective_constant", "averaged"),
    "objective_follows_the_means": ([("latent_objective", "actions=action_sequences, generator=generator)",
                                      "actions=action_sequences, generator=generator, sample=False)")],
                                    "objective_exact", "prior's means"),
    "objective_without_the_filter": ([("latent_objective", "posterior, _ = model.observe_step(belief, action, "
                                       "observation, generator)", "posterior = belief")],
                                     "objective_exact", "from the old belief"),
    "objective_filters_without_the_generator": ([("latent_objective", "observation, generator)  #",
                                                  "observation)  #")], "objective_generator", "seeded alike"),
}

ALTERNATIVE = [
    ("lambda_returns", None,  # the definition: a mixture of n-step returns, weights (1 − λ) λ^{n−1}, the rest λ^{N−1}
     "    H = rewards.shape[0]\n"
     "    rows = []\n"
     "    for t in range(H):\n"
     "        total, discount, n_step = torch.zeros_like(rewards[0]), torch.ones_like(rewards[0]), []\n"
     "        for j in range(t, H):\n"
     "            total = total + discount * rewards[j]\n"
     "            discount = discount * continuation[j]\n"
     "            n_step.append(total + discount * values[j + 1])\n"
     "        mixed = sum((1 - lam) * lam ** n * g for n, g in enumerate(n_step[:-1]))\n"
     "        rows.append(mixed + lam ** (len(n_step) - 1) * n_step[-1])\n"
     "    return torch.stack(rows)\n"),
    ("lambda_returns_vectorised", None,  # x_k and a lower-triangular mask over an einsum
     "    H = rewards.shape[0]\n"
     "    bootstrap = torch.cat([(1 - lam) * values[1:-1], values[-1:]])\n"
     "    x = rewards + continuation * bootstrap\n"
     "    factor = lam * continuation\n"
     "    rows = torch.arange(H)[:, None].expand(H, H)\n"
     "    cols = torch.arange(H)[None, :].expand(H, H)\n"
     "    inside = (cols > rows).reshape(H, H, *([1] * (x.ndim - 1)))\n"
     "    shifted = torch.cat([torch.ones_like(factor[:1]), factor[:-1]]).unsqueeze(0).expand(H, *factor.shape)\n"
     "    P = torch.cumprod(torch.where(inside, shifted, torch.ones_like(shifted)), 1)\n"
     "    P = P * (cols >= rows).reshape(H, H, *([1] * (x.ndim - 1)))\n"
     "    return torch.einsum('tk...,k...->t...', P, x)\n"),
    ("value_loss", None,
     "    alive = torch.cumprod(torch.cat([torch.ones_like(continuation[:1]), continuation[:-1]]), 0).detach()\n"
     "    target = returns.detach()\n"
     "    return 0.5 * (alive * (values - target).pow(2)).sum() / values.numel()\n"),
    ("actor_loss", None,
     "    alive = torch.cumprod(torch.cat([torch.ones_like(continuation[:1]), continuation[:-1]]), 0).detach()\n"
     "    return -(alive * returns).sum() / returns.numel()\n"),
    ("latent_objective", None,
     "    posterior, prior = model.observe_step(belief, action, observation, generator=generator)\n"
     "    def objective(action_sequences):\n"
     "        N = action_sequences.shape[0]\n"
     "        with torch.no_grad():\n"
     "            rollout = model.imagine(posterior.repeat(N), actions=action_sequences, generator=generator)\n"
     "        return torch.sum(rollout.rewards, dim=1)\n"
     "    return objective, posterior\n"),
]

STUDENTS = helpers.share_submissions(BUGS)
STUDENT_OF = {bug: student for student, bugs in STUDENTS.items() for bug in bugs}


# ------------------------------------------------------------------------------ the solution's functions
def solution_namespace(edits=()) -> dict:
    """The solution notebook's imports and answer cells, with ``edits`` applied (this process's threads kept); each
    cell's source is registered with linecache, as IPython does, so that the checks can read a function's source."""
    threads = torch.get_num_threads()
    nb = apply_edits(nbformat.read(SOURCE, as_version=4), edits)
    namespace: dict = {}
    try:
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "imports"):
                filename = f"<cell {meta['grade_id']} {abs(hash(cell.source))}>"
                linecache.cache[filename] = (len(cell.source), None, cell.source.splitlines(True), filename)
                exec(compile(cell.source, filename, "exec"), namespace)  # noqa: S102
        return namespace
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hidden():
    """The instructor's hidden checks of this repository (solutions/hidden_checks/dreamer.py)."""
    instructor.set_course_root(REPO)
    try:
        yield instructor.hidden_checks("dreamer")
    finally:
        instructor.set_course_root(None)


def checks(hidden) -> dict:
    vec = {"name": "lambda_returns_vectorised"}
    return {
        "returns_recursion": lambda ns: dt.check_returns_recursion(ns["lambda_returns"], seed=1),
        "returns_exact": lambda ns: hidden.check_returns_exact(ns["lambda_returns"], seed=2),
        "vectorised_recursion": lambda ns: dt.check_returns_recursion(ns["lambda_returns_vectorised"], seed=3, **vec),
        "no_loop": lambda ns: dt.check_no_time_loop(ns["lambda_returns_vectorised"]),
        "value_gradients": lambda ns: dt.check_value_loss_gradients(ns["value_loss"], seed=4),
        "value_exact": lambda ns: hidden.check_value_loss_exact(ns["value_loss"], seed=5),
        "actor_example": lambda ns: dt.check_actor_loss_example(ns["actor_loss"]),
        "actor_gradients": lambda ns: dt.check_actor_loss_gradients(ns["actor_loss"], seed=6),
        "actor_exact": lambda ns: hidden.check_actor_loss_exact(ns["actor_loss"], seed=7),
        "objective_constant": lambda ns: dt.check_objective_constant_reward(ns["latent_objective"], seed=8),
        "objective_observation": lambda ns: dt.check_objective_uses_observation(ns["latent_objective"], seed=9),
        "objective_generator": lambda ns: dt.check_objective_generator(ns["latent_objective"], seed=10),
        "objective_exact": lambda ns: hidden.check_objective_exact(ns["latent_objective"], seed=11),
        "independent_returns": lambda ns: hidden.check_no_reference_calls("lambda_returns", ns["lambda_returns"]),
        "independent_vectorised": lambda ns: hidden.check_no_reference_calls("lambda_returns_vectorised",
                                                                             ns["lambda_returns_vectorised"]),
    }


# ------------------------------------------------------------------------------ one autograde run
@pytest.fixture(scope="module")
def graded(tmp_path_factory, kernel_env):
    course = new_course(tmp_path_factory.mktemp("graded-dreamer") / "course", with_release=False)
    return helpers.autograde_class(course, ASSIGNMENT, NOTEBOOK, SOURCE, ALTERNATIVE, BUGS, STUDENTS, TIMEOUT)


def test_release_regenerated_from_solutions_equals_committed_assignments(graded):
    assert pipeline.release_differences(REPO, graded.course, ASSIGNMENT) == []


def test_release_leaks_no_solution_or_hidden_test():
    assert pipeline.release_problems(REPO, ASSIGNMENT) == []
    text = (REPO / "assignments" / ASSIGNMENT / NOTEBOOK).read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    for needle in (RECURSION, "(values - returns.detach())", "posterior.repeat(action_sequences", "torch.cumprod(factors",
                   "hidden_checks", "check_no_reference_calls", "check_returns_exact(", "slipped_returns"):
        assert needle not in text, f"the release leaks {needle!r}"
    assert text.count("raise NotImplementedError()") == len(STUDENT_FUNCTIONS)
    nb = nbformat.read(REPO / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    assert f"assignments/{ASSIGNMENT}/{NOTEBOOK}" in nb.cells[0].source and "solutions/" not in nb.cells[0].source


def test_reference_solution_gets_full_marks(graded):
    result = graded.results["reference_solution"]
    assert (result.status, result.reason) == ("graded", "")
    assert result.max_score == MAX_SCORE >= 12
    assert result.cells == {name: float(points) for name, points in GRADED_CELLS.items()}


def test_another_correct_solution_gets_full_marks(graded):
    result = graded.results["another_correct_solution"]
    assert result.status == "graded"
    assert result.score == MAX_SCORE, result.cells


def test_untouched_release_gets_zero(graded):
    result = graded.results["untouched_release"]
    assert result.status == "graded" and result.score == 0
    assert set(result.cells) == set(GRADED_CELLS) and not any(result.cells.values())


def test_the_catalogue_of_wrong_solutions_covers_the_named_mistakes():
    assert len(BUGS) >= 6 and len(BUGS) + len(MORE_BUGS) >= 20
    for bugs in STUDENTS.values():
        cells = [BUGS[bug][1] for bug in bugs]
        assert sum(map(len, cells)) == len(set().union(*cells)), bugs


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_wrong_solution_loses_points_where_its_bug_is_and_is_told_why(graded, bug):
    """It loses points in every cell its bug reaches (all of them where a veto fails), and the student reads what
    is wrong in one of those cells."""
    _, losing, (_, phrase) = BUGS[bug]
    result = graded.results[STUDENT_OF[bug]]
    assert result.status == "graded"
    assert all(result.cells[name] < GRADED_CELLS[name] for name in losing), (bug, result.cells)
    assert bug not in VETOED or result.cells[VETOED[bug]] == 0
    outputs = helpers.graded_outputs(graded.course, STUDENT_OF[bug], ASSIGNMENT, NOTEBOOK)
    assert any(re.search(phrase, outputs[cell]) for cell in losing), {cell: outputs[cell][-800:] for cell in losing}


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_a_wrong_solution_keeps_the_points_of_the_cells_without_its_bugs(graded, student):
    reached = set().union(*(BUGS[bug][1] for bug in STUDENTS[student]))
    kept = {name: points for name, points in graded.results[student].cells.items() if name not in reached}
    assert kept == {name: float(GRADED_CELLS[name]) for name in kept} and len(kept) + len(reached) == len(GRADED_CELLS)


def test_an_edited_test_cell_is_graded_as_released(graded):
    """The student replaced report.score in the actor's test cell: the grader runs the released cell."""
    result = graded.results[STUDENT_OF["actor_weights_not_detached_and_the_test_cell_edited"]]
    assert 0 < result.cells["test_actor_loss"] < GRADED_CELLS["test_actor_loss"]


# ------------------------------------------------------------------------------ the checks, called directly
@pytest.mark.parametrize("bug", sorted(BUGS) + sorted(MORE_BUGS))
def test_each_wrong_solution_is_told_what_is_wrong(hidden, bug):
    edits, check, phrase = (BUGS[bug][0], *BUGS[bug][2]) if bug in BUGS else MORE_BUGS[bug]
    run = checks(hidden)[check]
    run(solution_namespace())  # the correct solution passes this check ...
    with pytest.raises(GradingError, match=phrase):  # ... the wrong one fails it, saying why
        run(solution_namespace([e for e in edits if not e[0].startswith("test_")]))


@pytest.mark.parametrize("slip", sorted(helpers.hidden("dreamer").RETURN_MESSAGES))
def test_every_catalogued_slip_of_the_returns_is_named(hidden, slip):
    hidden.check_returns_exact(lambda *args: hidden.slipped_returns(*args), seed=5)  # no slip: passes
    with pytest.raises(GradingError) as caught:
        hidden.check_returns_exact(lambda *args: hidden.slipped_returns(*args, slips=[slip]), seed=5)
    assert hidden.RETURN_MESSAGES[slip] in str(caught.value)


@pytest.mark.parametrize("slip", sorted(helpers.hidden("dreamer").LOSS_MESSAGES))
def test_every_catalogued_slip_of_the_losses_is_named(hidden, slip):
    hidden.check_value_loss_exact(lambda *args: hidden.slipped_value_loss(*args), seed=5)
    hidden.check_actor_loss_exact(lambda *args: hidden.slipped_actor_loss(*args), seed=5)
    check, student = ((hidden.check_actor_loss_exact, hidden.slipped_actor_loss) if slip == "sign_flipped"
                      else (hidden.check_value_loss_exact, hidden.slipped_value_loss))
    with pytest.raises(GradingError) as caught:
        check(lambda *args: student(*args, slips=[slip]), seed=5)
    assert hidden.LOSS_MESSAGES[slip] in str(caught.value)


def _objective_student(slip: str | None):
    """latent_objective written here (not the hidden slipped_objective), with one slip."""
    def latent_objective(model, belief, action, observation, generator=None):
        start = belief
        if slip != "no_filter":
            posterior, prior = model.observe_step(belief, action, observation, generator)
            start = prior if slip == "start_from_prior" else posterior
        else:
            posterior = belief

        def objective(actions):
            N = actions.shape[0]
            with torch.no_grad():
                if slip == "posterior_rollout":
                    state, rewards = start.repeat(N), []
                    for k in range(actions.shape[1]):
                        state, _ = model.observe_step(state, actions[:, k], model.decode(state.features), generator)
                        rewards.append(model.reward(state.features))
                    rewards = torch.stack(rewards, 1)
                else:
                    rewards = model.imagine(start.repeat(N), actions=actions, generator=generator,
                                            sample=slip != "mean_path").rewards
            return rewards.mean(1) if slip == "horizon_mean" else rewards.sum(1)

        return objective, posterior
    return latent_objective


@pytest.mark.parametrize("slip", sorted(helpers.hidden("dreamer").OBJECTIVE_MESSAGES))
def test_every_catalogued_slip_of_the_objective_is_named(hidden, slip):
    hidden.check_objective_exact(_objective_student(None), seed=5)
    with pytest.raises(GradingError) as caught:
        hidden.check_objective_exact(_objective_student(slip), seed=5)
    assert hidden.OBJECTIVE_MESSAGES[slip] in str(caught.value)


def test_the_solution_passes_every_check_across_seeds(hidden):
    ns = solution_namespace()
    for seed in (101, 202):
        for name in ("lambda_returns", "lambda_returns_vectorised"):
            fn = ns[name]
            dt.check_returns_example(fn, name)
            dt.check_returns_recursion(fn, name, seed)
            dt.check_returns_special_lambdas(fn, name, seed)
            dt.check_returns_termination(fn, name, seed)
            dt.check_returns_batched(fn, name, seed)
            hidden.check_returns_exact(fn, name, seed, horizon=9)
            hidden.check_returns_gradient_exact(fn, name, seed)
        dt.check_no_time_loop(ns["lambda_returns_vectorised"])
        dt.check_value_loss_example(ns["value_loss"])
        dt.check_value_loss_gradients(ns["value_loss"], seed)
        hidden.check_value_loss_exact(ns["value_loss"], seed)
        dt.check_actor_loss_example(ns["actor_loss"])
        dt.check_actor_loss_gradients(ns["actor_loss"], seed)
        hidden.check_actor_loss_exact(ns["actor_loss"], seed)
        fn = ns["latent_objective"]
        dt.check_objective_constant_reward(fn, seed)
        dt.check_objective_candidates_independent(fn, seed)
        dt.check_objective_uses_observation(fn, seed)
        dt.check_objective_generator(fn, seed)
        hidden.check_objective_exact(fn, seed)
    for name in STUDENT_FUNCTIONS:
        hidden.check_no_reference_calls(name, ns[name], seed=7)


def test_calling_the_reference_is_caught_in_the_notebook_too(hidden):
    """Without the sandbox (the student's own notebook) a profiler sees the reference's code run."""
    def student(rewards, values, continuation, lam):
        return lambda_returns(rewards, values, continuation, lam)

    with pytest.raises(GradingError, match=reference_phrase("mbrl_course.rl.actor_critic")):
        hidden.check_no_reference_calls("lambda_returns", student)

    def planner(model, belief, action, observation, generator=None):
        posterior, _ = model.observe_step(belief, action, observation, generator)
        return latent_return_objective(model, posterior, generator=generator), posterior

    dt.check_objective_constant_reward(planner)  # correct ...
    with pytest.raises(GradingError, match=reference_phrase("mbrl_course.planning.latent")):
        hidden.check_no_reference_calls("latent_objective", planner)  # ... but the reference's


def test_a_crash_and_a_missing_function_get_messages_not_exceptions():
    with pytest.raises(IndexError):  # the Report turns this into "your code raised ..."
        dt.check_returns_example(lambda r, v, c, lam: r[7])
    with pytest.raises(GradingError, match="not implemented"):
        dt.check_value_loss_example(lambda *a: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(GradingError, match=r"\(H, \.\.\.\)"):
        dt.check_returns_recursion(lambda r, v, c, lam: v)
    with pytest.raises(GradingError, match="a scalar loss"):
        dt.check_actor_loss_example(lambda returns, continuation: -returns)
    with pytest.raises(GradingError, match="expected a pair"):
        dt.check_objective_constant_reward(lambda model, belief, action, observation, generator=None: 0.0)


def test_the_loop_check_reads_the_function_and_ignores_what_it_cannot_read():
    ns = solution_namespace([("lambda_returns_vectorised", None, "    return torch.stack([r for r in rewards])\n")])
    with pytest.raises(GradingError, match="has a comprehension"):
        dt.check_no_time_loop(ns["lambda_returns_vectorised"])
    dt.check_no_time_loop(eval("lambda r, v, c, lam: r"))  # noqa: S307 (no source to read: nothing to fail)


def test_when_grading_the_loop_check_reads_the_submitted_notebook(tmp_path):
    """In the grader the student's function is a handle: its source comes from the submission's notebook."""
    nb = apply_edits(nbformat.read(SOURCE, as_version=4), [("lambda_returns_vectorised", None, LOOP_BODY)])
    nbformat.write(nb, tmp_path / NOTEBOOK)
    handle = remote.RemoteObject(None, 0, "function", True)
    with remote.active(SimpleNamespace(source_dir=tmp_path)):
        source = dt._student_source(handle, "lambda_returns_vectorised")
    assert source == cell_by_id(nb, "lambda_returns_vectorised").source
    node = dt._function_node(source, "lambda_returns_vectorised")
    assert [type(n).__name__ for n in ast.walk(node) if isinstance(n, dt.LOOPS)] == ["For"]
    with remote.active(SimpleNamespace(source_dir=tmp_path / "empty")):
        assert dt._student_source(handle, "lambda_returns_vectorised") is None


# ------------------------------------------------------------------------------ the oracles themselves
def _n_step_mixture(r, v, c, lam):
    """V_λ by its definition: (1 − λ) Σ_n λ^{n−1} V_N^n + λ^{H−t−1} V_N^{H−t}."""
    H = r.shape[0]
    rows = []
    for t in range(H):
        total, discount, n_steps = torch.zeros_like(r[0]), torch.ones_like(r[0]), []
        for j in range(t, H):
            total, discount = total + discount * r[j], discount * c[j]
            n_steps.append(total + discount * v[j + 1])
        rows.append(sum((1 - lam) * lam ** n * g for n, g in enumerate(n_steps[:-1])) + lam ** (H - t - 1) * n_steps[-1])
    return torch.stack(rows)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.95, 1.0])
def test_the_slip_free_oracles_equal_the_definition_and_the_reference(hidden, lam):
    trajectory = dt.random_trajectory(3, horizon=6, batch=(2,), end=3)
    want = _n_step_mixture(*trajectory.args(), lam)
    torch.testing.assert_close(lambda_returns(*trajectory.args(), lam), want)
    torch.testing.assert_close(hidden.slipped_returns(*trajectory.args(), lam), want)
    for slip in hidden.RETURN_SLIPS if 0 < lam < 1 else ():  # every slip changes the answer here
        assert not torch.allclose(hidden.slipped_returns(*trajectory.args(), lam, [slip]), want), slip
    with pytest.raises(ValueError, match="slips"):
        hidden.slipped_returns(*trajectory.args(), lam, ["no_such_slip"])


def test_the_worked_examples_and_the_weights_are_the_reference(hidden):
    example = [torch.tensor(dt.RETURNS_EXAMPLE[k], dtype=DTYPE) for k in ("rewards", "values", "continuation")]
    torch.testing.assert_close(lambda_returns(*example, dt.RETURNS_EXAMPLE["lam"]),
                               torch.tensor(dt.RETURNS_EXAMPLE_RESULT, dtype=DTYPE))
    values, returns, continuation = (dt._example(k) for k in ("values", "returns", "continuation"))
    weights = discount_weights(continuation)[:-1]
    torch.testing.assert_close(dt._weights(continuation), weights)
    assert float(value_loss(values, returns, weights)) == pytest.approx(dt.VALUE_LOSS_EXAMPLE_RESULT, abs=1e-12)
    assert dt.VALUE_LOSS_EXAMPLE_RESULT == pytest.approx(0.525)
    assert float(actor_loss(returns, weights)) == pytest.approx(dt.ACTOR_LOSS_EXAMPLE_RESULT, abs=1e-12)
    v, r, c = (x.detach() for x in dt._loss_inputs(0))
    torch.testing.assert_close(hidden.slipped_value_loss(v, r, c), value_loss(v, r, discount_weights(c)[:-1]))
    torch.testing.assert_close(hidden.slipped_actor_loss(r, c), actor_loss(r, discount_weights(c)[:-1]))


def test_the_objective_oracle_is_imagine_and_every_slip_changes_it(hidden):
    """The reference objective equals a step-by-step prior rollout written here (model.prior, model.reward)."""
    problem = dt.planning_problem(lambda *a: None, 3)
    want, posterior = hidden.objective_oracle(problem, seed=4)
    gen = torch.Generator().manual_seed(4)
    post, _ = problem.model.observe_step(problem.belief, problem.action, problem.observation, gen)
    state, total = post.repeat(problem.candidates.shape[0]), 0.0
    with torch.no_grad():
        for k in range(problem.candidates.shape[1]):
            state = problem.model.prior(state, problem.candidates[:, k], gen)
            total = total + problem.model.reward(state.features)
    torch.testing.assert_close(want, total)
    torch.testing.assert_close(posterior.s, post.s)
    torch.testing.assert_close(hidden.slipped_objective(problem, 4), want)
    for slip in hidden.OBJECTIVE_SLIPS:
        assert not torch.allclose(hidden.slipped_objective(problem, 4, [slip]), want), slip


def test_the_config_blocks_the_reference_modules_that_exist():
    assert set(pipeline.reference_modules(REPO, ASSIGNMENT)) == set(REFERENCE_PACKAGES)


# ------------------------------------------------------------------------------ what students can see and import
def _is_reference(module: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in REFERENCE_PACKAGES)


@pytest.fixture(scope="module")
def visible_run():
    """What a student's copy runs (imports, answers, the visible checks), run once in a fresh Python: the
    mbrl_course modules it imported, and what it printed."""
    return helpers.run_fresh(helpers.visible_code(SOURCE))


def test_the_visible_checks_import_no_reference_module_and_offer_no_oracle(hidden, visible_run):
    imported = helpers.imports_in_source(REPO / "mbrl_course" / "grading" / "dreamer.py")
    assert not [m for m in imported if _is_reference(m)], imported
    modules, _ = visible_run  # the imports cell imports mbrl_course.grading.dreamer, in a fresh Python
    assert "mbrl_course.grading.dreamer" in modules and not any(map(_is_reference, modules))
    from mbrl_course.grading import export

    assert export._top_level_names(Path(hidden.__file__).read_text()).isdisjoint(dir(dt))
    for name in ("objective_oracle", "slipped_returns", "slipped_objective", "check_returns_exact"):
        assert hasattr(hidden, name) and not hasattr(dt, name), name


def test_the_visible_part_of_the_notebook_passes_without_the_reference(visible_run):
    """What a student's copy runs (imports, answers, the visible checks) passes on the solution and imports
    no reference module."""
    modules, out = visible_run
    assert "[FAIL]" not in out and out.count("[PASS]") >= 3 * len(GRADED_CELLS), out
    assert not [m for m in modules if _is_reference(m)], modules


def test_the_notebook_cells_that_run_in_the_sandbox_import_no_reference_module(tmp_path):
    assert helpers.sandbox_cells_importing(SOURCE, _is_reference, tmp_path) == {}


def test_the_hidden_checks_are_not_installed_and_the_release_names_none_of_them(hidden):
    assert Path(hidden.__file__).name == "dreamer.py" and (REPO / instructor.HIDDEN_DIR / "dreamer.py").is_file()
    helpers.expect_release_names_no_hidden_check(hidden, REPO / "assignments" / ASSIGNMENT / NOTEBOOK, SOURCE)
    helpers.expect_no_hidden_name_in_the_grading_package(REPO / instructor.HIDDEN_DIR / "dreamer.py")


def test_graded_cells_declare_their_points_and_hide_tests():
    helpers.expect_graded_cells_convention(SOURCE, GRADED_CELLS, "dreamer", "dreamer_tests")
    assert cell_by_id(nbformat.read(SOURCE, as_version=4), "imports").metadata.nbgrader.locked
