"""The grading of Assignment 2, "Kalman filtering and learning by marginal likelihood", end to end.

One nbgrader autograde run (on a copy of the course in tmp_path) grades a class built from the
solution notebook: the reference solution (full marks), the untouched release (0), an alternative
correct solution (the slide's information-form update and a MultivariateNormal log-density: full
marks) and realistic wrong solutions, each of which loses points in the cells where its bug is
(and keeps them elsewhere). The visible checks of :mod:`mbrl_course.grading.kalman` and the
instructor's hidden ones (``solutions/hidden_checks/kalman.py``) are also called directly: each
wrong solution is told by a visible check what is wrong, the solution passes every check on other
seeds, the hidden exact oracles agree with independent libraries (scipy, filterpy, pykalman) and
pass the visible checks, and the visible module neither offers an oracle nor imports the reference.
The course machinery (release, submit, autograde) is Assignment 1's, from mbrl_course.grading.pipeline
and tests/test_grading.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import grading_helpers as helpers
import nbformat
import numpy as np
import pytest
import torch
from grading_helpers import REPO, apply_edits, new_course

from mbrl_course.grading import kalman as kt
from mbrl_course.grading import pipeline
from mbrl_course.grading.report import GradingError

kh = helpers.hidden("kalman")  # the instructor's hidden checks (solutions/hidden_checks/kalman.py)

ASSIGNMENT = "02-kalman"
NOTEBOOK = "02-kalman.ipynb"
SOURCE = REPO / "solutions" / ASSIGNMENT / NOTEBOOK
TIMEOUT = 60  # seconds per cell while grading here; the slowest test cell takes a few seconds
GRADED_CELLS = {"test_predict_step": 2, "test_update_step": 3, "test_log_predictive": 2,
                "test_kalman_log_likelihood": 2, "test_fit": 3}
MAX_SCORE = sum(GRADED_CELLS.values())
F64 = torch.float64

CALL_REFERENCE = '''    from mbrl_course.filters import kalman_filter

    return kalman_filter(Y, m0, S0, E, F, C, D).log_likelihood
'''
INFORMATION_FORM = '''    precision = torch.linalg.inv(Sigma) + C.mT @ torch.linalg.solve(D, C)  # Σ_t⁻¹ + Cᵀ D⁻¹ C
    S = torch.linalg.inv(precision)
    information = C.mT @ torch.linalg.solve(D, y.unsqueeze(-1)) + torch.linalg.solve(Sigma, mu.unsqueeze(-1))
    m = (S @ information).squeeze(-1)  # S_t (Cᵀ D⁻¹ y_t + Σ_t⁻¹ μ_t)
    return m, 0.5 * (S + S.mT)
'''
MULTIVARIATE_NORMAL = '''    V = D + C @ Sigma @ C.mT
    u = (C @ mu.unsqueeze(-1)).squeeze(-1)
    return torch.distributions.MultivariateNormal(u, covariance_matrix=V).log_prob(y)
'''
LOOP = ("        mu, Sigma = predict_step(m, S, E, F)\n"
        "        total = total + log_predictive(mu, Sigma, y, C, D)\n")

# name -> (edits (solution cell, old text, new text), graded cells that must lose points, (check, phrase));
# every check named here but "independent" runs in the visible part of a test cell
BUGS = {
    "predict_forgets_F": (
        [("predict_step", "Sigma = F + E @ S @ E.mT", "Sigma = E @ S @ E.mT")],
        {"test_predict_step", "test_kalman_log_likelihood"}, ("predict_cov", "missing the transition noise F_t")),
    "predict_E_S_transposed": (
        [("predict_step", "Sigma = F + E @ S @ E.mT", "Sigma = F + E @ S.mT")],
        {"test_predict_step", "test_kalman_log_likelihood"}, ("predict_cov", "trailing E_tᵀ is missing")),
    "update_gain_with_D": (
        [("update_step", "gain = torch.linalg.solve(V, C @ Sigma).mT", "gain = torch.linalg.solve(D, C @ Sigma).mT"),
         ("update_step", "S = Sigma - gain @ V @ gain.mT", "S = Sigma - gain @ C @ Sigma")],
        {"test_update_step", "test_kalman_log_likelihood"}, ("update_values", "needs V_t⁻¹")),
    "innovation_with_filtered_mean": (
        [("kalman_log_likelihood", LOOP, "        total = total + log_predictive(m, S, y, C, D)\n"
                                         "        mu, Sigma = predict_step(m, S, E, F)\n")],
        {"test_kalman_log_likelihood"}, ("likelihood_one_step", r"scored with p\(s_0\)")),
    "missing_log_2pi": (
        [("log_predictive", " - 0.5 * dy * math.log(2 * math.pi)", "")],
        {"test_log_predictive", "test_kalman_log_likelihood"}, ("predictive_values", "missing the log 2π term")),
    "missing_half_on_logdet": (
        [("log_predictive", "- 0.5 * torch.logdet(V)", "- torch.logdet(V)")],
        {"test_log_predictive", "test_kalman_log_likelihood"}, ("predictive_values", "log-determinant needs its ½")),
    "sigma_instead_of_V": (
        [("log_predictive", "    V = D + C @ Sigma @ C.mT  # V_t = D + C Σ_t Cᵀ\n", "    V = Sigma\n")],
        {"test_log_predictive", "test_kalman_log_likelihood"}, ("predictive_values", "used Σ_t as the covariance")),
    "fit_gradient_descent": (
        [("fit", "(-value).backward()", "value.backward()")],
        {"test_fit"}, ("fit_climbs", "gradient descent")),
    "fit_forgets_zero_grad": (
        [("fit", "        optimizer.zero_grad()\n", "")],
        {"test_fit"}, ("fit_climbs", r"zero the gradients in every step \(optimizer.zero_grad\(\)\)")),
    "fit_with_sgd": (
        [("fit", "optimizer = torch.optim.Adam(", "optimizer = torch.optim.SGD(")],
        {"test_fit"}, ("fit_first_step", "SGD")),
    "likelihood_keeps_the_last_term": (
        [("kalman_log_likelihood", "total = total + log_predictive(mu, Sigma, y, C, D)",
          "total = log_predictive(mu, Sigma, y, C, D)")],
        {"test_kalman_log_likelihood"}, ("likelihood_values", "only the last term")),
    "logdet_cut_off_from_autograd": (
        [("log_predictive", "- 0.5 * torch.logdet(V)", "- 0.5 * torch.logdet(V).detach()")],
        {"test_kalman_log_likelihood"}, ("likelihood_gradient", "finite differences")),
    "calls_the_reference_filter": (
        [("kalman_log_likelihood", None, CALL_REFERENCE)],
        {"test_kalman_log_likelihood"}, ("independent", "reference implementation")),
}
ALTERNATIVE = [("update_step", None, INFORMATION_FORM), ("log_predictive", None, MULTIVARIATE_NORMAL)]


# ------------------------------------------------------------------------------ the solution's functions
def solution_namespace(edits=()) -> dict:
    """The solution notebook's imports and functions (its solution cells), with ``edits`` applied."""
    return helpers.solution_namespace(SOURCE, edits)


CHECKS = {
    "predict_cov": lambda ns: kt.check_predict_step_cov(ns["predict_step"], seed=1),
    "update_values": lambda ns: kt.check_update_step_values(ns["update_step"], seed=2),
    "likelihood_one_step": lambda ns: kt.check_kalman_log_likelihood_one_step(ns["kalman_log_likelihood"], seed=3),
    "likelihood_values": lambda ns: kt.check_kalman_log_likelihood_values(ns["kalman_log_likelihood"], seed=3),
    "likelihood_gradient": lambda ns: kt.check_kalman_log_likelihood_gradient(ns["kalman_log_likelihood"], seed=3),
    "predictive_values": lambda ns: kt.check_log_predictive_values(ns["log_predictive"], seed=4),
    "fit_climbs": lambda ns: kt.check_fit_climbs(ns["fit"], seed=6),
    "fit_first_step": lambda ns: kt.check_fit_first_step(ns["fit"], seed=6),
    "independent": lambda ns: kt.check_independent("kalman_log_likelihood", ns["kalman_log_likelihood"], seed=8),
}
"""The visible check that catches each bug of BUGS, called directly."""
HIDDEN_CHECKS = {
    "likelihood_models": lambda ns: kh.check_kalman_log_likelihood_models(ns["kalman_log_likelihood"], seed=3),
    "fit_adam_steps": lambda ns: kh.check_fit_adam_steps(ns["fit"], seed=7),
}
VISIBLE_NAMES = {"predict_cov": "check_predict_step_cov", "update_values": "check_update_step_values",
                 "likelihood_one_step": "check_kalman_log_likelihood_one_step",
                 "likelihood_values": "check_kalman_log_likelihood_values",
                 "likelihood_gradient": "check_kalman_log_likelihood_gradient",
                 "predictive_values": "check_log_predictive_values", "fit_climbs": "check_fit_climbs",
                 "fit_first_step": "check_fit_first_step"}


# ------------------------------------------------------------------------------ one autograde run
@pytest.fixture(scope="module")
def graded(tmp_path_factory, kernel_env):
    course = new_course(tmp_path_factory.mktemp("graded-kalman") / "course", with_release=False)
    pipeline.release(course, ASSIGNMENT)
    release_nb = nbformat.read(course / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    reference = pipeline.fill_release(release_nb, nbformat.read(SOURCE, as_version=4))
    students = {"reference_solution": reference, "untouched_release": release_nb,
                "information_form_and_mvn": apply_edits(reference, ALTERNATIVE)}
    students.update({name: apply_edits(reference, edits) for name, (edits, _, _) in BUGS.items()})
    for student, nb in students.items():
        pipeline.submit(course, student, ASSIGNMENT, {NOTEBOOK: nb})
    results = pipeline.autograde(course, ASSIGNMENT, timeout=TIMEOUT)
    return SimpleNamespace(course=course, results={r.student: r for r in results})


def test_release_regenerated_from_solutions_equals_committed_assignments(graded):
    assert pipeline.release_differences(REPO, graded.course, ASSIGNMENT) == []


def test_release_leaks_no_solution_or_hidden_test():
    assert pipeline.release_problems(REPO, ASSIGNMENT) == []
    text = (REPO / "assignments" / ASSIGNMENT / NOTEBOOK).read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    for needle in ("torch.linalg.solve(V, C @ Sigma)", "gain @ V @ gain.mT", "torch.logdet(V)",
                   "optimizer = torch.optim.Adam(params", "check_independent", "check_fit_adam_steps",
                   "check_kalman_log_likelihood_models", "check_update_step_models"):
        assert needle not in text, f"the release leaks {needle!r}"
    assert text.count("raise NotImplementedError()") == 5
    nb = nbformat.read(REPO / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    assert f"assignments/{ASSIGNMENT}/{NOTEBOOK}" in nb.cells[0].source and "solutions/" not in nb.cells[0].source


def test_reference_solution_gets_full_marks(graded):
    result = graded.results["reference_solution"]
    assert (result.status, result.reason) == ("graded", "")
    assert result.max_score == MAX_SCORE >= 10
    assert result.cells == {name: float(points) for name, points in GRADED_CELLS.items()}


def test_another_correct_form_gets_full_marks(graded):
    result = graded.results["information_form_and_mvn"]
    assert result.status == "graded"
    assert result.score == MAX_SCORE, result.cells


def test_untouched_release_gets_zero(graded):
    result = graded.results["untouched_release"]
    assert result.status == "graded" and result.score == 0
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
            assert result.cells[name] == points, f"{bug}: {name} should keep its points ({result.cells})"
    if bug == "calls_the_reference_filter":
        assert result.cells["test_kalman_log_likelihood"] == 0


def test_feedback_tells_the_student_what_is_wrong(graded):
    nb = nbformat.read(graded.course / "autograded" / "missing_log_2pi" / ASSIGNMENT / NOTEBOOK, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "missing the log 2π term" in text


# ------------------------------------------------------------------------------ the checks, called directly
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_wrong_solution_is_told_what_is_wrong(bug):
    edits, _, (check, phrase) = BUGS[bug]
    CHECKS[check](solution_namespace())  # the correct solution passes this check ...
    with pytest.raises(GradingError, match=phrase):  # ... the wrong one fails it, saying why
        CHECKS[check](solution_namespace(edits))


@pytest.mark.parametrize("bug", sorted(b for b, (_, _, (check, _)) in BUGS.items() if check != "independent"))
def test_each_mistake_is_named_by_a_visible_check(bug):
    """The student sees the message before handing in: the check that names the bug runs in the visible
    part of a test cell that loses points for it."""
    _, losing, (check, _) = BUGS[bug]
    nb = nbformat.read(SOURCE, as_version=4)
    assert any(VISIBLE_NAMES[check] in helpers.visible_calls(helpers.cell_by_id(nb, c).source, "kalman_tests")
               for c in losing)


def test_visible_checks_carry_at_least_half_of_every_cells_points():
    nb = nbformat.read(SOURCE, as_version=4)
    for name in GRADED_CELLS:
        visible, hidden = helpers.part_weights(helpers.cell_by_id(nb, name).source)
        assert visible >= hidden > 0, f"{name}: visible weight {visible}, hidden {hidden}"


@pytest.mark.filterwarnings("ignore:The use of `x.T`:UserWarning")
@pytest.mark.parametrize(("edits", "check", "phrase"), [
    ([("predict_step", "Sigma = F + E @ S @ E.mT", "Sigma = F + E.mT @ S @ E")], "predict_cov", "wrong side"),
    ([("predict_step", "Sigma = F + E @ S @ E.mT", "Sigma = F + E @ S @ E.T")], "predict_batched", r"\.mT"),
    ([("update_step", "return m, 0.5 * (S + S.mT)", "return mu, Sigma")], "update_values", "unchanged"),
    ([("log_predictive", "    V = D + C @ Sigma @ C.mT  # V_t = D + C Σ_t Cᵀ\n", "    V = D\n")],
     "predictive_values", "used D as the covariance"),
    ([("kalman_log_likelihood", "    return total", "    return total / Y.shape[-2]")],
     "likelihood_values", "averaged"),
    ([("kalman_log_likelihood", LOOP + "        m, S = update_step(mu, Sigma, y, C, D)\n",
       "        total = total + log_predictive(m, S, y, C, D)\n        m, S = update_step(m, S, y, C, D)\n"
       "        m, S = predict_step(m, S, E, F)\n")], "likelihood_models", "without a prediction step"),
    ([("kalman_log_likelihood", LOOP, "        total = total + log_predictive(m, S, y, C, D)\n"
                                      "        mu, Sigma = predict_step(m, S, E, F)\n")],
     "likelihood_models", "filtered m_{t-1}, S_{t-1}"),
    ([("fit", "optimizer = torch.optim.Adam(", "optimizer = torch.optim.SGD(")], "fit_adam_steps", "SGD"),
    ([("fit", "        optimizer.zero_grad()\n", "")], "fit_adam_steps", "never zero the gradients"),
    ([("fit", "(-value).backward()", "value.backward()")], "fit_first_step", "gradient descent"),
    ([("fit", "        trace.append(value.detach())", "        trace.append(log_likelihood(*params).detach())")],
     "fit_adam_steps", "after each step"),
    ([("kalman_log_likelihood", "    return total", "    return total.detach()")], "likelihood_gradient", "no gradient"),
])
def test_more_mistakes_get_their_own_message(edits, check, phrase):
    checks = dict(CHECKS, **HIDDEN_CHECKS,
                  predict_batched=lambda ns: kt.check_predict_step_batched(ns["predict_step"], seed=9))
    checks[check](solution_namespace())
    with pytest.raises(GradingError, match=phrase):
        checks[check](solution_namespace(edits))


def test_the_solution_passes_every_check_across_seeds():
    ns = solution_namespace()
    for seed in (101,):
        kh.check_predict_step_models(ns["predict_step"], seed)
        kt.check_predict_step_batched(ns["predict_step"], seed)
        kh.check_update_step_models(ns["update_step"], seed)
        kt.check_update_step_batched(ns["update_step"], seed)
        kh.check_log_predictive_models(ns["log_predictive"], seed)
        kt.check_log_predictive_batched(ns["log_predictive"], seed)
        kt.check_kalman_log_likelihood_one_step(ns["kalman_log_likelihood"], seed)
        kt.check_kalman_log_likelihood_values(ns["kalman_log_likelihood"], seed, state_dim=3, obs_dim=1)
        kt.check_kalman_log_likelihood_gradient(ns["kalman_log_likelihood"], seed)
        kh.check_kalman_log_likelihood_models(ns["kalman_log_likelihood"], seed, runs=2)
        kh.check_kalman_log_likelihood_exact_gradient(ns["kalman_log_likelihood"], seed)
        kt.check_fit_climbs(ns["fit"], seed)
        kt.check_fit_first_step(ns["fit"], seed)
        kh.check_fit_adam_steps(ns["fit"], seed)
        kh.check_fit_marginal_likelihood(ns["fit"], seed)
        for name in ("predict_step", "update_step", "log_predictive", "kalman_log_likelihood", "fit"):
            kt.check_independent(name, ns[name], seed)


def test_a_student_crash_and_nan_get_messages_not_exceptions():
    def crashes(m, S, E, F):
        return m[5], S  # m has 3 entries

    def nan(m, S, E, F):
        return E @ m * float("nan"), F

    with pytest.raises(IndexError):
        kt.check_predict_step_shapes(crashes)  # the Report turns this into "your code raised ..."
    with pytest.raises(GradingError, match="NaN"):
        kt.check_predict_step_mean(nan)
    with pytest.raises(GradingError, match="not implemented"):
        kt.check_fit_returns(lambda *a: (_ for _ in ()).throw(NotImplementedError()))


# ------------------------------------------------------------------------------ the oracles themselves
def test_joint_log_likelihood_matches_pykalman_and_the_reference_filter():
    from pykalman import KalmanFilter

    from mbrl_course.filters import kalman_filter

    for seed, (dx, dy, T) in enumerate([(3, 2, 12), (2, 1, 30), (1, 1, 5)]):
        model = kt.random_model(seed, dx, dy, num_steps=T)
        exact = float(kh.joint_log_likelihood(model.Y, model.m0, model.S0, model.E, model.F, model.C, model.D))
        # pykalman's prior is p(s_1): N(E m_0, E S_0 Eᵀ + F) in the slide's convention (y_1 after one prediction)
        pk = KalmanFilter(transition_matrices=model.E.numpy(), observation_matrices=model.C.numpy(),
                          transition_covariance=model.F.numpy(), observation_covariance=model.D.numpy(),
                          initial_state_mean=(model.E @ model.m0).numpy(),
                          initial_state_covariance=(model.E @ model.S0 @ model.E.T + model.F).numpy())
        assert exact == pytest.approx(pk.loglikelihood(model.Y.numpy()), rel=1e-9, abs=1e-9)
        reference = kalman_filter(model.Y, model.m0, model.S0, model.E, model.F, model.C, model.D).log_likelihood
        assert exact == pytest.approx(float(reference), rel=1e-9, abs=1e-9)


def test_condition_and_predictive_oracles_match_filterpy_and_scipy():
    from filterpy.kalman import KalmanFilter
    from scipy.stats import multivariate_normal

    for seed, (dx, dy) in enumerate([(3, 2), (2, 4), (1, 1)]):
        mu, Sigma, y, C, D = kt.random_moments(seed, dx, dy)
        kf = KalmanFilter(dim_x=dx, dim_z=dy)
        kf.x, kf.P, kf.H, kf.R = mu.numpy().copy(), Sigma.numpy().copy(), C.numpy(), D.numpy()
        kf.update(y.numpy())
        m, S = kh.condition_oracle(mu, Sigma, y, C, D)
        np.testing.assert_allclose(m.numpy(), kf.x, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(S.numpy(), kf.P, rtol=1e-9, atol=1e-10)
        V = (D + C @ Sigma @ C.T).numpy()
        want = multivariate_normal((C @ mu).numpy(), V).logpdf(y.numpy())
        assert float(kh.log_predictive_oracle(mu, Sigma, y, C, D)) == pytest.approx(want, rel=1e-10)


def test_noise_problem_maximiser_is_a_maximum_of_the_reference_likelihood():
    from mbrl_course.filters import kalman_filter

    Y, log_likelihood, best, best_value = kh._noise_problem(0)
    one = torch.ones(1, 1, dtype=F64)

    def reference(log_q, log_r):
        return kalman_filter(Y, torch.zeros(1, dtype=F64), one, one, log_q.exp() * one, one,
                             log_r.exp() * one).log_likelihood

    assert float(reference(best[0], best[1])) == pytest.approx(float(best_value), abs=1e-8)
    grid = torch.linspace(-0.3, 0.3, 7, dtype=F64)
    for dq in grid:  # a brute-force neighbourhood: nothing higher
        for dr in grid:
            assert float(reference(best[0] + dq, best[1] + dr)) <= float(best_value) + 1e-9


def test_graded_cells_declare_their_points_and_hide_tests():
    nb = nbformat.read(SOURCE, as_version=4)
    cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    assert {c.metadata.nbgrader.grade_id: c.metadata.nbgrader.points for c in cells} == GRADED_CELLS
    for cell in cells:
        assert f"points={cell.metadata.nbgrader.points})" in cell.source
        assert "### BEGIN HIDDEN TESTS" in cell.source and cell.source.rstrip().endswith("report.score()")
        assert "check_independent" in cell.source.split("### BEGIN HIDDEN TESTS")[1]
        assert cell.metadata.nbgrader.locked


# ------------------------------------------------------------------------------ visible and hidden checks
def test_the_oracles_pass_the_visible_checks_and_recognised_slips_fail_them():
    """The visible checks compute their expected values inline; the hidden oracles, checked against scipy,
    filterpy and pykalman above, agree with them on every visible example, and Adam's recognised slips fail."""
    for seed in (0, 5):
        kt.check_update_step_values(kh.condition_oracle, seed, sizes=[(3, 2), (2, 4), (1, 1)])
        kt.check_log_predictive_values(kh.log_predictive_oracle, seed, sizes=[(2, 2), (3, 2), (1, 3)])
        kt.check_kalman_log_likelihood_one_step(kh.joint_log_likelihood, seed)
        kt.check_kalman_log_likelihood_values(kh.joint_log_likelihood, seed)
        kt.check_kalman_log_likelihood_values(kh.joint_log_likelihood, seed, state_dim=3, obs_dim=1, num_steps=5)
        kt.check_kalman_log_likelihood_gradient(kh.joint_log_likelihood, seed)
        kt.check_fit_returns(kh.reference_fit, seed)
        kt.check_fit_climbs(kh.reference_fit, seed)
        kt.check_fit_first_step(kh.reference_fit, seed)
    for variant, phrase in (("descent", "DOWN"), ("sgd", "SGD")):
        with pytest.raises(GradingError, match=phrase):
            kt.check_fit_first_step(lambda *args, v=variant: kh.reference_fit(*args, variant=v))
    with pytest.raises(GradingError, match="zero the gradients"):
        kt.check_fit_climbs(lambda *args: kh.reference_fit(*args, variant="no_zero_grad"))


def test_the_visible_checks_offer_no_oracle():
    """Nothing a student imports computes an answer for inputs of the student's choosing: the oracles with the
    students' signatures, the comparisons with the reference and the catalogues that need them are hidden."""
    for name in ("condition_oracle", "log_predictive_oracle", "joint_log_likelihood", "joint_moments",
                 "reference_fit", "_variant_log_likelihood", "_likelihood_mistakes", "_noise_problem",
                 "check_fit_adam_steps", "check_kalman_log_likelihood_models", "check_predict_step_models"):
        assert not hasattr(kt, name), name
        assert hasattr(kh, name), name
    for name in ("_predict_cov_mistakes", "_update_mistakes", "_predictive_mistakes", "check_predict_step_reference"):
        assert not hasattr(kt, name), name  # the visible checks recognise these slips on their own examples only
    assert helpers.hidden_only_names(kh).isdisjoint(dir(kt))


def test_the_visible_checks_never_import_the_reference():
    """Graded notebooks run where mbrl_course.filters is absent: neither importing the visible checks nor
    running the imports cell and the visible part of every test cell on the solution imports it."""
    assert not any(m.startswith("mbrl_course.filters") for m in helpers.imports_in_source(Path(kt.__file__)))
    modules, _ = helpers.run_fresh("import mbrl_course.grading.kalman")
    assert "mbrl_course.grading.kalman" in modules and "mbrl_course.filters" not in modules
    modules, out = helpers.run_fresh(helpers.visible_code(SOURCE))
    assert "[FAIL]" not in out and out.count("[PASS]") >= 3 * len(GRADED_CELLS), out
    assert "mbrl_course.filters" not in modules


def test_the_hidden_tests_load_their_checks_and_the_release_names_none_of_them():
    nb = nbformat.read(SOURCE, as_version=4)
    for name in GRADED_CELLS:
        visible, _, hidden_part = helpers.cell_by_id(nb, name).source.partition(helpers.HIDDEN_MARKER)
        assert "kalman_hidden" not in visible and "hidden_checks" not in visible
        assert 'kalman_hidden = hidden_checks("kalman")' in hidden_part and "kalman_hidden.check_" in hidden_part
    assert helpers.secret_lines_in(REPO / "assignments" / ASSIGNMENT / NOTEBOOK, SOURCE) == []
    text = (REPO / "assignments" / ASSIGNMENT / NOTEBOOK).read_text()
    for name in helpers.hidden_only_names(kh) | {"hidden_checks", "kalman_hidden", "check_independent"}:
        assert name not in text, f"the release names the hidden {name!r}"
