"""The grading of Assignment 4, "Moment matching, a Gaussian through a GP exactly", end to end.

One nbgrader autograde run (on a copy of the course in tmp_path) grades a class built from the
solution notebook: the reference solution (full marks), the untouched release (0 in every cell), an
alternative correct solution (the kernel by torch.cdist, the posterior by an LU solve, the 1-D mean as a
normal density, the covariance of all output pairs at once, the cost with (I + W Σ)⁻¹ W: full marks)
and realistic wrong solutions. Each wrong solution (a row of BUGS) loses points in the cells where its
bug is, keeps them elsewhere, and the graded notebook names its mistake there; to keep the run short,
bugs whose cells do not overlap share one submission (more mistakes are graded by direct calls of the checks
only). The checks are also called directly: each wrong
solution is told what is wrong, every catalogued mistake is recognised by its check, the solution
passes every check on other seeds, and the instructor's oracles agree with the reference
implementation (mbrl_course.models.moment_matching) and with each other. The visible checks, installed
with the package, import no reference module; the hidden ones are loaded from solutions/hidden_checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import grading_helpers as helpers
import nbformat
import pytest
import torch
from grading_helpers import REPO, apply_edits, cell_by_id, nbgrader_id, new_course

from mbrl_course.grading import instructor, pipeline
from mbrl_course.grading import moment_matching as mt
from mbrl_course.grading.report import GradingError
from mbrl_course.models import moment_matching as reference

ASSIGNMENT = "04-moment-matching"
NOTEBOOK = "04-moment-matching.ipynb"
SOURCE = REPO / "solutions" / ASSIGNMENT / NOTEBOOK
TIMEOUT = 60  # seconds per cell while grading here; the slowest test cell takes about a second
GRADED_CELLS = {"test_se_kernel": 2, "test_gp_posterior": 2, "test_predictive_mean_1d": 2,
                "test_predictive_variance_1d": 2, "test_predictive_mean": 3, "test_predictive_covariance": 3,
                "test_expected_saturating_cost": 2}
MAX_SCORE = sum(GRADED_CELLS.values())
REFERENCE_PACKAGES = ("mbrl_course.models.moment_matching", "mbrl_course.models.gp", "mbrl_course.rl.controllers",
                      "mbrl_course.agents")
STUDENT_FUNCTIONS = ("se_kernel", "gp_posterior", "predictive_mean_1d", "predictive_variance_1d", "predictive_mean",
                     "predictive_covariance", "expected_saturating_cost")
DTYPE = torch.float64

POSTERIOR_BY_INVERSE = '''    K = se_kernel(X, X, lengthscales, signal_var) + noise_var * torch.eye(X.shape[0], dtype=X.dtype)
    K_inv = torch.linalg.inv(K)
    k_star = se_kernel(X, x_star, lengthscales, signal_var)
    return k_star.T @ K_inv @ y, signal_var - (k_star * (K_inv @ k_star)).sum(0)
'''
CALL_REFERENCE_MEAN = '''    from mbrl_course.models.moment_matching import gp_moments_at_gaussian_input

    moments = gp_moments_at_gaussian_input(mu, Sigma, inputs, beta, lengthscales, signal_var)
    return moments.mean, moments.input_cov
'''
OWN_VARIANCE = ("            if a == b:\n"
                "                entry = entry + signal_var[a] - (K_inv[a] * Q).sum()  # the GP's own variance\n")


def reference_phrase(package: str) -> str:
    """What a student who calls ``package`` reads: the check's message here, the sandbox's when grading."""
    name = re.escape(package)
    return rf"reference implementation in {name}|importing {name} \(the reference implementation"


# name -> (edits (solution cell, old text, new text), graded cells that must lose points, (check, phrase))
BUGS = {
    "kernel_divides_by_lengthscale_not_its_square": (
        [("se_kernel", "/ lengthscales  #", "/ lengthscales.sqrt()  #")],
        {"test_se_kernel", "test_gp_posterior"}, ("kernel_exact", "divide by ℓ_d²")),
    "posterior_without_the_noise": (
        [("gp_posterior", " + noise_var * torch.eye(n, dtype=X.dtype))", ")")],
        {"test_gp_posterior"}, ("posterior_exact", r"K instead of K \+ σ_ε² I")),
    "posterior_by_an_explicit_inverse": (
        [("gp_posterior", None, POSTERIOR_BY_INVERSE)],
        {"test_gp_posterior"}, ("posterior_interpolates", "explicit inverse")),
    "posterior_variance_of_a_noisy_observation": (
        [("gp_posterior", "signal_var - (v**2).sum(0)", "signal_var - (v**2).sum(0) + noise_var")],
        {"test_gp_posterior"}, ("posterior_exact", "noisy observation")),
    "mean_1d_used_the_mean_only": (
        [("predictive_mean_1d", "q = signal_var * torch.sqrt(lengthscale**2 / spread) * torch.exp(-0.5 * nu**2 / spread)",
          "q = signal_var * torch.exp(-0.5 * nu**2 / lengthscale**2)")],
        {"test_predictive_mean_1d", "test_predictive_variance_1d"}, ("mean_1d_exact", "mean μ only")),
    "mean_1d_forgot_the_input_variance_in_the_lengthscale": (
        [("predictive_mean_1d", "torch.exp(-0.5 * nu**2 / spread)", "torch.exp(-0.5 * nu**2 / lengthscale**2)")],
        {"test_predictive_mean_1d", "test_predictive_variance_1d"},
        ("mean_1d_exact", "input variance in the length-scale")),
    "mean_1d_dropped_the_determinant_factor": (
        [("predictive_mean_1d", "signal_var * torch.sqrt(lengthscale**2 / spread) * torch.exp",
          "signal_var * torch.exp")],
        {"test_predictive_mean_1d", "test_predictive_variance_1d"}, ("mean_1d_exact", "dropped the determinant factor")),
    "variance_1d_forgot_the_gps_own_variance": (
        [("predictive_variance_1d", "return mean_part + own_part", "return mean_part")],
        {"test_predictive_variance_1d"}, ("variance_1d_far", "own variance")),
    "mean_used_lengthscales_not_their_squares": (
        [("predictive_mean", "torch.diag_embed(lengthscales**2)", "torch.diag_embed(lengthscales)"),
         ("predictive_mean", "Sigma / lengthscales[:, None, :] ** 2", "Sigma / lengthscales[:, None, :]")],
        {"test_predictive_mean", "test_predictive_covariance"}, ("mean_exact", "ℓ where ℓ² belongs")),
    "input_output_cov_without_the_leading_sigma": (
        [("predictive_mean", "input_output_cov = Sigma @ (weighted", "input_output_cov = (weighted")],
        {"test_predictive_mean"}, ("input_output_cov_exact", "leading Σ is missing")),
    "input_output_cov_transposed": (
        [("predictive_mean", "return mean, input_output_cov", "return mean, input_output_cov.T")],
        {"test_predictive_mean"}, ("input_output_cov_monte_carlo", "wrong order")),
    "covariance_left_the_off_diagonal_at_zero": (
        [("predictive_covariance", "row.append(entry)", "row.append(entry if a == b else torch.zeros_like(entry))")],
        {"test_predictive_covariance"}, ("covariance_monte_carlo", "off-diagonal entries are 0")),
    "covariance_forgot_the_gps_own_variance": (
        [("predictive_covariance", OWN_VARIANCE, "")],
        {"test_predictive_covariance"}, ("covariance_far", "own variance")),
    "cost_without_the_inverse_of_I_plus_sigma_w": (
        [("expected_saturating_cost", "offset @ W @ torch.linalg.solve(spread, offset)", "offset @ W @ offset")],
        {"test_expected_saturating_cost"}, ("cost_exact", r"lost \(I \+ Σ W\)⁻¹")),
    "cost_dropped_the_determinant_factor": (
        [("expected_saturating_cost", " / torch.linalg.det(spread).sqrt()", "")],
        {"test_expected_saturating_cost"}, ("cost_exact", "dropped the determinant factor")),
    "calls_the_reference_moments": (
        [("predictive_mean", None, CALL_REFERENCE_MEAN)],
        {"test_predictive_mean", "test_predictive_covariance"},
        ("independent_mean", reference_phrase("mbrl_course.models.moment_matching"))),
}
VETOED = {"calls_the_reference_moments": "test_predictive_mean"}

ALTERNATIVE = [
    ("se_kernel", None, "    squared = torch.cdist(x1 / lengthscales, x2 / lengthscales).pow(2)\n"
                        "    return signal_var * torch.exp(-0.5 * squared)\n"),
    ("gp_posterior", None,
     "    noisy = se_kernel(X, X, lengthscales, signal_var) + noise_var * torch.eye(X.shape[0], dtype=X.dtype)\n"
     "    k_star = se_kernel(X, x_star, lengthscales, signal_var)\n"
     "    return k_star.T @ torch.linalg.solve(noisy, y), signal_var - (k_star * torch.linalg.solve(noisy, k_star)).sum(0)\n"),
    ("predictive_mean_1d", None,
     "    spread = sigma2[:, None] + lengthscale**2  # q_i = α² √(2π) ℓ N(x_i | μ, σ² + ℓ²)\n"
     "    density = torch.distributions.Normal(mu[:, None], spread.sqrt()).log_prob(inputs).exp()\n"
     "    return (signal_var * math.sqrt(2 * math.pi) * lengthscale * density) @ beta\n"),
    ("predictive_covariance", None,
     "    E, D = lengthscales.shape\n"
     "    mean, _ = predictive_mean(mu, Sigma, inputs, beta, lengthscales, signal_var)\n"
     "    nu = inputs - mu\n"
     "    inv_lambda = lengthscales**-2\n"
     "    k_mu = signal_var[:, None] * torch.exp(-0.5 * (nu**2 * inv_lambda[:, None, :]).sum(-1))\n"
     "    pair = inv_lambda[:, None, :] + inv_lambda[None, :, :]  # Λ_a⁻¹ + Λ_b⁻¹: (E, E, D)\n"
     "    R = Sigma * pair[..., None, :] + torch.eye(D)  # (E, E, D, D)\n"
     "    T = torch.linalg.solve(R, Sigma.expand_as(R))\n"
     "    za = (nu * inv_lambda[:, None, :])[:, None, :, None, :]  # (E, 1, n, 1, D)\n"
     "    zb = (nu * inv_lambda[:, None, :])[None, :, None, :, :]  # (1, E, 1, n, D)\n"
     "    z = za + zb  # (E, E, n, n, D)\n"
     "    quad = torch.einsum('abijd,abde,abije->abij', z, T, z)\n"
     "    Q = k_mu[:, None, :, None] * k_mu[None, :, None, :] * torch.exp(0.5 * quad)\n"
     "    Q = Q / torch.linalg.det(R).sqrt()[..., None, None]\n"
     "    cov = torch.einsum('ai,abij,bj->ab', beta, Q, beta) - mean[:, None] * mean[None, :]\n"
     "    own = signal_var - (K_inv * torch.diagonal(Q, dim1=0, dim2=1).permute(2, 0, 1)).sum((-1, -2))\n"
     "    return cov + torch.diag(own)\n"),
    ("expected_saturating_cost", None,
     "    eye = torch.eye(mu.shape[0])\n"
     "    offset = mu - target\n"
     "    shrunk = torch.linalg.solve(eye + W @ Sigma, W)  # (I + W Σ)⁻¹ W = W (I + Σ W)⁻¹\n"
     "    log_det = torch.linalg.slogdet(eye + Sigma @ W).logabsdet\n"
     "    return 1 - torch.exp(-0.5 * offset @ shrunk @ offset - 0.5 * log_det)\n"),
]


def submissions() -> dict[str, list[str]]:
    """Student name -> the bugs it carries: bugs whose losing cells do not overlap share a submission."""
    groups: list[tuple[list[str], set[str]]] = []
    for bug, (_, losing, _) in BUGS.items():
        for names, cells in groups:
            if not cells & losing:
                names.append(bug)
                cells |= losing
                break
        else:
            groups.append(([bug], set(losing)))
    return {f"wrong_{index}": names for index, (names, _) in enumerate(groups)}


STUDENTS = submissions()
STUDENT_OF = {bug: student for student, bugs in STUDENTS.items() for bug in bugs}


# ------------------------------------------------------------------------------ the solution's functions
def solution_namespace(edits=()) -> dict:
    """The solution notebook's imports and answer cells, with ``edits`` applied."""
    import matplotlib.pyplot as plt

    threads = torch.get_num_threads()
    try:  # the notebook sets one torch thread; keep this process's setting
        return helpers.solution_namespace(SOURCE, edits)
    finally:
        torch.set_num_threads(threads)
        plt.close("all")  # the exercise's figure


@pytest.fixture(scope="module")
def hidden():
    """The instructor's hidden checks of this repository (solutions/hidden_checks/moment_matching.py)."""
    instructor.set_course_root(REPO)
    try:
        yield instructor.hidden_checks("moment_matching")
    finally:
        instructor.set_course_root(None)


def checks(hidden) -> dict:
    return {
        "kernel_exact": lambda ns: hidden.check_kernel_exact(ns["se_kernel"], seed=1),
        "kernel_properties": lambda ns: mt.check_kernel_properties(ns["se_kernel"], seed=2),
        "posterior_exact": lambda ns: hidden.check_posterior_exact(ns["gp_posterior"], seed=3),
        "posterior_interpolates": lambda ns: mt.check_posterior_interpolates(ns["gp_posterior"], seed=4),
        "posterior_one_point": lambda ns: mt.check_posterior_one_point(ns["gp_posterior"], seed=5),
        "mean_1d_exact": lambda ns: hidden.check_mean_1d_exact(ns["predictive_mean_1d"], seed=6),
        "mean_1d_wide": lambda ns: mt.check_mean_1d_wide_input(ns["predictive_mean_1d"], seed=7),
        "mean_1d_monte_carlo": lambda ns: mt.check_mean_1d_monte_carlo(ns["predictive_mean_1d"], seed=8),
        "variance_1d_exact": lambda ns: hidden.check_variance_1d_exact(ns["predictive_variance_1d"], seed=9),
        "variance_1d_far": lambda ns: mt.check_variance_1d_far_from_data(ns["predictive_variance_1d"], seed=10),
        "variance_1d_point": lambda ns: mt.check_variance_1d_point_input(ns["predictive_variance_1d"], seed=11),
        "mean_exact": lambda ns: hidden.check_mean_exact(ns["predictive_mean"], seed=12),
        "input_output_cov_exact": lambda ns: hidden.check_input_output_cov_exact(ns["predictive_mean"], seed=13),
        "input_output_cov_monte_carlo": lambda ns: mt.check_input_output_cov_monte_carlo(ns["predictive_mean"],
                                                                                           seed=14),
        "covariance_exact": lambda ns: hidden.check_covariance_exact(ns["predictive_covariance"], seed=15),
        "covariance_far": lambda ns: mt.check_covariance_far_from_data(ns["predictive_covariance"], seed=16),
        "covariance_monte_carlo": lambda ns: mt.check_covariance_monte_carlo(ns["predictive_covariance"], seed=17),
        "cost_exact": lambda ns: hidden.check_cost_exact(ns["expected_saturating_cost"], seed=18),
        "independent_mean": lambda ns: hidden.check_no_reference_calls("predictive_mean", ns["predictive_mean"],
                                                                       seed=19),
    }


# ------------------------------------------------------------------------------ one autograde run
@pytest.fixture(scope="module")
def graded(tmp_path_factory, kernel_env):
    course = new_course(tmp_path_factory.mktemp("graded-moment-matching") / "course", with_release=False)
    pipeline.release(course, ASSIGNMENT)
    release_nb = nbformat.read(course / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    solution = pipeline.fill_release(release_nb, nbformat.read(SOURCE, as_version=4))
    students = {"reference_solution": solution, "untouched_release": release_nb,
                "another_correct_solution": apply_edits(solution, ALTERNATIVE)}
    students.update({student: apply_edits(solution, [edit for bug in bugs for edit in BUGS[bug][0]])
                     for student, bugs in STUDENTS.items()})
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
    for needle in ("torch.cholesky_solve(y[:, None], L)", "torch.sqrt(lengthscale**2 / spread)",
                   "signal_var - (K_inv * Q).sum((-2, -1))", "torch.linalg.det(R).sqrt()",
                   "offset @ W @ torch.linalg.solve(spread, offset)", "s ≈ 3", "hidden_checks",
                   "check_no_reference_calls", "check_covariance_exact", "slipped_moments"):
        assert needle not in text, f"the release leaks {needle!r}"
    assert text.count("raise NotImplementedError()") == len(STUDENT_FUNCTIONS) + 1  # and the exercise
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


def test_bugs_that_share_a_submission_lose_points_in_different_cells():
    assert len(BUGS) >= 6 and len(STUDENTS) < len(BUGS)
    for bugs in STUDENTS.values():
        cells = [BUGS[bug][1] for bug in bugs]
        assert sum(map(len, cells)) == len(set().union(*cells)), bugs


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_wrong_solution_loses_points_where_its_bug_is(graded, bug):
    _, losing, _ = BUGS[bug]
    result = graded.results[STUDENT_OF[bug]]
    assert result.status == "graded"
    for name in losing:
        assert result.cells[name] < GRADED_CELLS[name], f"{bug}: {name} should lose points ({result.cells})"
    if bug in VETOED:
        assert result.cells[VETOED[bug]] == 0


@pytest.mark.parametrize("student", sorted(STUDENTS))
def test_a_wrong_solution_keeps_the_points_of_the_cells_without_its_bugs(graded, student):
    result = graded.results[student]
    losing = set().union(*(BUGS[bug][1] for bug in STUDENTS[student]))
    for name, points in GRADED_CELLS.items():
        if name not in losing:
            assert result.cells[name] == points, f"{student} ({STUDENTS[student]}): {name} ({result.cells})"


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_the_graded_notebook_names_the_mistake(graded, bug):
    """The student reads what is wrong in the cell where the points were lost."""
    _, losing, (_, phrase) = BUGS[bug]
    nb = nbformat.read(graded.course / "autograded" / STUDENT_OF[bug] / ASSIGNMENT / NOTEBOOK, as_version=4)
    outputs = {nbgrader_id(c): "".join(o.get("text", "") for o in c.get("outputs", []))
               for c in nb.cells if c.cell_type == "code"}
    assert any(re.search(phrase, outputs[cell]) for cell in losing), {cell: outputs[cell][-800:] for cell in losing}


# ------------------------------------------------------------------------------ the checks, called directly
@pytest.mark.parametrize("bug", sorted(BUGS))
def test_each_wrong_solution_is_told_what_is_wrong(hidden, bug):
    edits, _, (check, phrase) = BUGS[bug]
    run = checks(hidden)[check]
    run(solution_namespace())  # the correct solution passes this check ...
    with pytest.raises(GradingError, match=phrase):  # ... the wrong one fails it, saying why
        run(solution_namespace(edits))


@pytest.mark.parametrize(("edits", "check", "phrase"), [
    ([("predictive_variance_1d", "beta, Q, beta) - mean**2  #", "beta, Q, beta)  #")], "variance_1d_point",
     "squared mean"),
    ([("predictive_covariance", "torch.exp(0.5 * quad) / torch.linalg.det(R).sqrt()", "torch.exp(0.5 * quad)")],
     "covariance_exact", r"determinant factor \|R\|"),
    ([("se_kernel", "torch.exp(-0.5 * (scaled**2)", "torch.exp(-(scaled**2)")], "kernel_properties", "factor ½"),
    ([("predictive_mean_1d", "signal_var * torch.sqrt(lengthscale**2 / spread) * torch.exp", "signal_var * torch.exp")],
     "mean_1d_wide", "determinant factor"),
    ([("se_kernel", "return signal_var * torch.exp", "return signal_var**2 * torch.exp")], "kernel_exact",
     "do not square it"),
    ([("gp_posterior", "return k_star.T @ beta, signal_var - (v**2).sum(0)",
       "return k_star.T @ beta, signal_var.expand(k_star.shape[1])")], "posterior_one_point", "prior variance"),
    ([("predictive_variance_1d", "own_part = signal_var - (K_inv * Q).sum((-2, -1))", "own_part = signal_var")],
     "variance_1d_exact", "trace term is missing"),
    ([("predictive_variance_1d", "torch.sqrt(ell2 / (ell2 + 2 * s2))", "torch.sqrt(ell2 / (ell2 + s2))")],
     "variance_1d_exact", "used the mean's"),
    ([("predictive_mean_1d", "signal_var * torch.sqrt(lengthscale**2 / spread)", "signal_var * lengthscale**2 / spread")],
     "mean_1d_exact", "power −½"),
    ([("predictive_mean", "nu = inputs - mu  # ν_i: (n, D)", "nu = mu - inputs  # ν_i: (n, D)")],
     "input_output_cov_exact", "wrong sign"),
    ([("predictive_covariance", "(nu * inv_lambda[b])[None, :, :]", "(nu * inv_lambda[a])[None, :, :]"),
      ("predictive_covariance", "(inv_lambda[a] + inv_lambda[b])", "(inv_lambda[a] + inv_lambda[a])")],
     "covariance_exact", "you used Λ_a for both"),
    ([("predictive_covariance", "entry = beta[a] @ Q @ beta[b] - mean[a] * mean[b]",
       "entry = beta[a] @ Q @ beta[b]")], "covariance_exact", "squared mean"),
    ([("expected_saturating_cost", "return 1 - torch.exp", "return torch.exp")], "cost_exact", "expected reward"),
])
def test_more_mistakes_get_their_own_message(hidden, edits, check, phrase):
    run = checks(hidden)[check]
    run(solution_namespace())
    with pytest.raises(GradingError, match=phrase):
        run(solution_namespace(edits))


def _slipped_student(hidden, part: str, slips: list[str]):
    """A stand-in student whose ``part`` makes exactly the catalogued ``slips`` (from hidden.slipped_moments)."""
    def gp(inputs, beta, lengthscales, signal_var, K_inv=None):
        if K_inv is None:  # a mean's stand-in: the covariance it also computes is not looked at
            K_inv = torch.zeros(beta.shape[0], beta.shape[1], beta.shape[1], dtype=DTYPE)
        return mt.GPProblem(inputs, lengthscales, signal_var, None, beta, K_inv)

    def one_d(index):
        def student(mu, sigma2, inputs, beta, lengthscale, signal_var, K_inv=None):
            problem = gp(inputs[:, None], beta[None], lengthscale.reshape(1, 1), signal_var.reshape(1),
                         None if K_inv is None else K_inv[None])
            return torch.stack([hidden.slipped_moments(problem, m[None], s[None, None], slips)[index].reshape(-1)[0]
                                for m, s in zip(mu, sigma2)])
        return student

    if part == "mean_1d":
        return one_d(0)
    if part == "variance_1d":
        return one_d(2)
    if part == "mean":
        return lambda mu, Sigma, *args: hidden.slipped_moments(gp(*args), mu, Sigma, slips)[:2]
    return lambda mu, Sigma, *args: hidden.slipped_moments(gp(*args), mu, Sigma, slips)[2]


def _catalogue_cases():
    """(function, its exact check, a slip of the catalogue) for every catalogued slip of the moments."""
    from mbrl_course.grading.instructor import hidden_checks

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(instructor.ENV_VAR, str(REPO))
        module = hidden_checks("moment_matching")
    one_d = {k: v for k, v in module.MEAN_MESSAGES.items() if k != "first_output_hyperparameters"}
    inherited = list(module.MEAN_SLIPS_IN_VARIANCE)
    return ([("mean_1d", "check_mean_1d_exact", slip) for slip in one_d]
            + [("variance_1d", "check_variance_1d_exact", slip) for slip in [*module.VARIANCE_MESSAGES, *inherited]]
            + [("mean", "check_mean_exact", slip) for slip in module.MEAN_MESSAGES]
            + [("mean", "check_input_output_cov_exact", slip) for slip in module.IO_MESSAGES]
            + [("covariance", "check_covariance_exact", slip) for slip in [*module.COVARIANCE_MESSAGES, *inherited]])


@pytest.mark.parametrize(("part", "check", "slip"), _catalogue_cases())
def test_every_catalogued_slip_of_the_moments_is_named(hidden, part, check, slip):
    if slip in hidden.MEAN_SLIPS_IN_VARIANCE:  # a variance that subtracts a wrong mean
        message = hidden.MEAN_MESSAGES[hidden.MEAN_SLIPS_IN_VARIANCE[slip]]
    else:
        message = {"mean_1d": hidden.MEAN_MESSAGES, "variance_1d": hidden.VARIANCE_MESSAGES,
                   "covariance": hidden.COVARIANCE_MESSAGES}.get(part, {**hidden.MEAN_MESSAGES, **hidden.IO_MESSAGES})[slip]
    getattr(hidden, check)(_slipped_student(hidden, part, []), seed=3)  # no slip: full marks
    with pytest.raises(GradingError) as caught:
        getattr(hidden, check)(_slipped_student(hidden, part, [slip]), seed=3)
    assert message in str(caught.value)


@pytest.mark.parametrize(("function", "check", "catalogue"), [
    ("se_kernel", "check_kernel_exact", "kernel_mistakes"),
    ("gp_posterior", "check_posterior_exact", "posterior_mistakes"),
    ("expected_saturating_cost", "check_cost_exact", "cost_mistakes"),
])
def test_every_catalogued_mistake_of_kernel_posterior_and_cost_is_named(hidden, function, check, catalogue):
    mistakes = getattr(hidden, catalogue)
    names = list(mistakes(*_sample_args(function)))
    assert len(names) >= 4
    for name in names:
        def student(*args, name=name):
            return mistakes(*args)[name][0]

        with pytest.raises(GradingError) as caught:
            getattr(hidden, check)(student, seed=5)
        assert mistakes(*_sample_args(function))[name][1] in str(caught.value), name


def _sample_args(function: str) -> tuple:
    gen = torch.Generator().manual_seed(0)
    if function == "se_kernel":
        return (torch.randn(3, 2, generator=gen, dtype=DTYPE), torch.randn(4, 2, generator=gen, dtype=DTYPE),
                torch.tensor([0.7, 1.3], dtype=DTYPE), torch.tensor(1.2, dtype=DTYPE))
    if function == "gp_posterior":
        X = torch.randn(5, 2, generator=gen, dtype=DTYPE)
        return (X, torch.randn(5, generator=gen, dtype=DTYPE), torch.randn(3, 2, generator=gen, dtype=DTYPE),
                torch.tensor([0.7, 1.3], dtype=DTYPE), torch.tensor(1.2, dtype=DTYPE), torch.tensor(0.3, dtype=DTYPE))
    return mt.cost_problem(0)


def test_the_solution_passes_every_check_across_seeds(hidden):
    ns = solution_namespace()
    for seed in (101, 202):
        mt.check_kernel_properties(ns["se_kernel"], seed, input_dim=2)
        hidden.check_kernel_exact(ns["se_kernel"], seed)
        mt.check_posterior_one_point(ns["gp_posterior"], seed)
        mt.check_posterior_interpolates(ns["gp_posterior"], seed)
        hidden.check_posterior_exact(ns["gp_posterior"], seed)
        mt.check_mean_1d_point_input(ns["predictive_mean_1d"], seed)
        mt.check_mean_1d_monte_carlo(ns["predictive_mean_1d"], seed)
        mt.check_mean_1d_wide_input(ns["predictive_mean_1d"], seed)
        hidden.check_mean_1d_exact(ns["predictive_mean_1d"], seed)
        mt.check_variance_1d_point_input(ns["predictive_variance_1d"], seed)
        mt.check_variance_1d_monte_carlo(ns["predictive_variance_1d"], seed)
        mt.check_variance_1d_far_from_data(ns["predictive_variance_1d"], seed)
        hidden.check_variance_1d_exact(ns["predictive_variance_1d"], seed)
        mt.check_mean_point_input(ns["predictive_mean"], seed)
        mt.check_mean_monte_carlo(ns["predictive_mean"], seed)
        mt.check_input_output_cov_monte_carlo(ns["predictive_mean"], seed)
        hidden.check_mean_exact(ns["predictive_mean"], seed)
        hidden.check_input_output_cov_exact(ns["predictive_mean"], seed)
        mt.check_covariance_far_from_data(ns["predictive_covariance"], seed)
        mt.check_covariance_point_input(ns["predictive_covariance"], seed)
        mt.check_covariance_monte_carlo(ns["predictive_covariance"], seed)
        hidden.check_covariance_exact(ns["predictive_covariance"], seed)
        mt.check_cost_point_input(ns["expected_saturating_cost"], seed)
        mt.check_cost_monte_carlo(ns["expected_saturating_cost"], seed)
        hidden.check_cost_exact(ns["expected_saturating_cost"], seed)
    for name in STUDENT_FUNCTIONS:
        hidden.check_no_reference_calls(name, ns[name], seed=7)


def test_a_crash_and_a_missing_function_get_messages_not_exceptions():
    with pytest.raises(IndexError):  # the Report turns this into "your code raised ..."
        mt.check_kernel_example(lambda x1, x2, lengthscales, signal_var: x1[:, 7])
    with pytest.raises(GradingError, match="not implemented"):
        mt.check_cost_point_input(lambda *a: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(GradingError, match="expected a pair"):
        mt.check_mean_point_input(lambda mu, Sigma, *args: mu)
    with pytest.raises(GradingError, match=r"\(B,\)"):
        mt.check_mean_1d_point_input(lambda mu, sigma2, *args: mu[:, None])


# ------------------------------------------------------------------------------ the oracles themselves
def test_the_slip_free_moments_equal_the_reference(hidden):
    """slipped_moments without slips is a second implementation (loops, explicit determinants): it agrees with the
    reference on problems of several sizes, and every slip changes the answer on the checks' problems."""
    for seed, (n, D, E) in enumerate(((7, 1, 1), (9, 2, 3), (12, 4, 2))):
        problem = mt.random_gp(seed, num_points=n, input_dim=D, outputs=E)
        mu, Sigma = mt.gaussian_input(seed, D, 0.1, 1.5)
        mean, io, cov = hidden.slipped_moments(problem, mu, Sigma)
        want = hidden.moments_oracle(problem, mu, Sigma)
        torch.testing.assert_close(mean, want.mean)
        torch.testing.assert_close(io, want.input_cov)
        torch.testing.assert_close(cov, want.cov)
    problem, mu, Sigma = hidden._problem(0)
    exact = hidden.slipped_moments(problem, mu, Sigma)
    for slip in hidden.SLIPS:
        slipped = hidden.slipped_moments(problem, mu, Sigma, [slip])
        assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(slipped, exact)), slip
    with pytest.raises(ValueError, match="slips"):
        hidden.slipped_moments(problem, mu, Sigma, ["no_such_slip"])


def test_the_posterior_oracle_agrees_with_the_reference_at_a_point(hidden):
    """The textbook posterior (an LU solve) equals the reference's moments at a point input Σ = 0."""
    problem = mt.random_gp(3, num_points=10, input_dim=2, outputs=1, noise_var=0.05)
    x_star = torch.tensor([[0.3, -0.2], [1.0, 1.5], [-2.0, 0.1]], dtype=DTYPE)
    targets = torch.linalg.solve(problem.K_inv[0], problem.beta[0])  # y = (K + σ² I) β
    mean, var = hidden.posterior_oracle(problem.inputs, targets, x_star, problem.lengthscales[0],
                                        problem.signal_var[0], problem.noise_var[0])
    for j in range(3):
        moments = hidden.moments_oracle(problem, x_star[j], torch.zeros(2, 2, dtype=DTYPE))
        torch.testing.assert_close(mean[j], moments.mean[0])
        torch.testing.assert_close(var[j], moments.cov[0, 0])
    posterior_mean, posterior_var = problem.posterior(x_star)  # the visible checks' GP, by K_inv
    torch.testing.assert_close(posterior_mean[:, 0], mean)
    torch.testing.assert_close(posterior_var[:, 0], var)


def test_the_monte_carlo_estimates_agree_with_the_reference():
    """The visible checks' Monte Carlo moments lie within their tolerance of the exact ones, and their standard
    errors are small enough to tell the catalogued mistakes apart (here: 1 % of the moments or less)."""
    problem = mt.random_gp(0, num_points=15, input_dim=3, outputs=2)
    mu, Sigma = mt.gaussian_input(0, 3)
    estimate = mt.monte_carlo(problem, mu, Sigma, seed=0)
    exact = reference.gp_moments_at_gaussian_input(mu, Sigma, problem.inputs, problem.beta, problem.lengthscales,
                                                   problem.signal_var, problem.K_inv)
    for got, se, want in ((estimate.mean, estimate.mean_se, exact.mean),
                          (estimate.input_output_cov, estimate.input_output_cov_se, exact.input_cov),
                          (estimate.cov, estimate.cov_se, exact.cov)):
        assert bool(((got - want).abs() <= mt.MC_TOLERANCE * se).all())
        assert float(se.max()) < 0.01 * float(want.abs().max())


def test_the_worked_example_is_computed_right():
    example = {key: torch.tensor(value, dtype=DTYPE) for key, value in mt.KERNEL_EXAMPLE.items()}
    want = reference.se_kernel(example["x1"], example["x2"], example["lengthscales"][None],
                               example["signal_var"].reshape(1))[0]
    torch.testing.assert_close(torch.tensor(mt.KERNEL_EXAMPLE_RESULT, dtype=DTYPE), want, atol=1e-6, rtol=0)


def test_the_config_blocks_the_reference_modules_that_exist():
    modules = pipeline.reference_modules(REPO, ASSIGNMENT)
    assert {"mbrl_course.models.moment_matching", "mbrl_course.agents"} <= set(modules) <= set(REFERENCE_PACKAGES)
    for module in REFERENCE_PACKAGES:
        path = REPO.joinpath(*module.split("."))
        assert (module in modules) == (path.is_dir() or path.with_suffix(".py").is_file()), module


# ------------------------------------------------------------------------------ what students can see and import
def _is_reference(module: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in REFERENCE_PACKAGES)


def test_the_visible_checks_import_no_reference_module_and_offer_no_oracle(hidden):
    imported = helpers.imports_in_source(REPO / "mbrl_course" / "grading" / "moment_matching.py")
    assert not [m for m in imported if _is_reference(m) or m.startswith("mbrl_course.models")], imported
    modules, _ = helpers.run_fresh("import mbrl_course.grading.moment_matching")
    assert "mbrl_course.grading.moment_matching" in modules and not any(map(_is_reference, modules))
    from mbrl_course.grading import export

    assert export._top_level_names(Path(hidden.__file__).read_text()).isdisjoint(dir(mt))
    for name in ("kernel_oracle", "posterior_oracle", "slipped_moments", "moments_oracle", "check_covariance_exact"):
        assert hasattr(hidden, name) and not hasattr(mt, name), name


def test_the_visible_part_of_the_notebook_passes_without_the_reference():
    """What a student's copy runs (imports, answers, the visible checks) passes on the solution and imports
    no reference module."""
    modules, out = helpers.run_fresh(helpers.visible_code(SOURCE))
    assert "[FAIL]" not in out and out.count("[PASS]") >= 2 * len(GRADED_CELLS), out
    assert not [m for m in modules if _is_reference(m)], modules


def test_the_notebook_cells_that_run_in_the_sandbox_import_no_reference_module(tmp_path):
    from IPython.core.inputtransformer2 import TransformerManager

    nb = nbformat.read(SOURCE, as_version=4)
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("grade"):
            continue  # test cells run in the grader (their hidden regions load the instructor's checks)
        path = tmp_path / f"cell_{index}.py"  # %pip and friends as the Python IPython runs
        path.write_text(TransformerManager().transform_cell(cell.source))
        bad = [m for m in helpers.imports_in_source(path) if _is_reference(m) or m.startswith("mbrl_course.models")]
        assert not bad, f"cell {nbgrader_id(cell) or cell.get('id')} imports {bad}"


def test_the_hidden_checks_are_not_installed_and_the_release_names_none_of_them(hidden):
    assert not (REPO / "mbrl_course" / "grading" / "hidden_checks").exists()
    assert (REPO / instructor.HIDDEN_DIR / "moment_matching.py").is_file()
    release = REPO / "assignments" / ASSIGNMENT / NOTEBOOK
    assert helpers.secret_lines_in(release, SOURCE) == []
    text = release.read_text()
    for name in helpers.hidden_only_names(hidden) | {"hidden_checks"}:
        assert not re.search(rf"\b{name}\b", text), f"the release names the hidden {name!r}"


def test_no_hidden_check_shares_a_name_with_the_installed_grading_package():
    """The student export refuses a package that defines a name of the hidden checks (mbrl_course.grading.export)."""
    from mbrl_course.grading import export

    hidden_names = export._top_level_names((REPO / instructor.HIDDEN_DIR / "moment_matching.py").read_text())
    for path in sorted((REPO / "mbrl_course" / "grading").glob("*.py")):
        assert not export._top_level_names(path.read_text()) & hidden_names, path


def test_graded_cells_declare_their_points_and_hide_tests():
    nb = nbformat.read(SOURCE, as_version=4)
    cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    assert {c.metadata.nbgrader.grade_id: c.metadata.nbgrader.points for c in cells} == GRADED_CELLS
    for cell in cells:
        name = cell.metadata.nbgrader.grade_id
        assert f"points={cell.metadata.nbgrader.points})" in cell.source
        visible, hidden_part = cell.source.split(helpers.HIDDEN_MARKER)
        assert cell.source.rstrip().endswith("report.score()") and cell.metadata.nbgrader.locked
        assert 'hidden_checks("moment_matching")' in hidden_part and "check_no_reference_calls" in hidden_part
        assert "veto=True" in hidden_part and "hidden." not in visible
        visible_weight, hidden_weight = helpers.part_weights(cell.source)
        assert visible_weight >= hidden_weight > 0, f"{name}: visible {visible_weight}, hidden {hidden_weight}"
        assert visible_weight / (visible_weight + hidden_weight) <= 0.6, name
        assert helpers.visible_calls(cell.source, "mm_tests"), name
    assert cell_by_id(nb, "exercise_uncertainty").metadata.nbgrader.solution
