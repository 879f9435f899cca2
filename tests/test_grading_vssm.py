"""The grading of Assignment 5, "The ELBO of a variational state-space model", end to end.

One nbgrader autograde run (on a copy of the course in tmp_path) grades a class built from the solution
notebook: the reference solution (full marks), the untouched release (0 in every cell), an alternative correct
solution (the KL by an explicit precision and einsum, the sampler by einsum, the ELBO vectorised over t: full
marks) and realistic wrong solutions. Each wrong solution (a row of BUGS) loses points in the cells where its
bug is, keeps them elsewhere, and the graded notebook names its mistake there (more mistakes are graded by
direct calls of the checks only: MORE_BUGS). The checks are also called directly: each wrong solution is told
what is wrong, every catalogued mistake is recognised by its check, the solution passes every check on other
seeds, and the instructor's oracles agree with the reference implementation (mbrl_course.ssm), with the Kalman
filter and RTS smoother of mbrl_course.filters, and with each other. The visible checks, installed with the
package, import no reference module; the hidden ones are loaded from solutions/hidden_checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import grading_helpers as helpers
import nbformat
import pytest
import torch
from grading_helpers import REPO, cell_by_id, new_course, reference_phrase

from mbrl_course.filters import LinearGaussianSSM, kalman_filter
from mbrl_course.grading import instructor, pipeline
from mbrl_course.grading import vssm as vt
from mbrl_course.grading.report import GradingError
from mbrl_course.ssm import ExactLinearGaussianPosterior, GenerativeModel, estimate_elbo
from mbrl_course.ssm._gaussian import kl_divergence

ASSIGNMENT = "05-vssm-elbo"
NOTEBOOK = "05-vssm-elbo.ipynb"
SOURCE = REPO / "solutions" / ASSIGNMENT / NOTEBOOK
TIMEOUT = 60  # seconds per cell while grading here; the slowest test cell takes about a second
GRADED_CELLS = {"test_gaussian_kl": 3, "test_sample_markovian": 4, "test_elbo": 5}
MAX_SCORE = sum(GRADED_CELLS.values())
REFERENCE_PACKAGES = ("mbrl_course.ssm",)
STUDENT_FUNCTIONS = ("gaussian_kl", "sample_markovian", "elbo")
DTYPE = torch.float64
BOTH = {"test_sample_markovian", "test_elbo"}  # a broken sampler breaks the ELBO built on it
KL_CELLS = {"test_gaussian_kl", "test_elbo"}

PRIOR_MARGINAL = ("        prior_mean = (E @ prior_mean[..., None])[..., 0]  # p(s_t) = N(E^t m_0, ...)\n"
                  "        prior_cov = E @ prior_cov @ E.mT + F\n"
                  "        value = value - gaussian_kl(mean_q, covs[..., t - 1, :, :], prior_mean, prior_cov)\n")
CALL_REFERENCE_KL = '''    from mbrl_course.ssm._gaussian import kl_divergence

    return kl_divergence(mean_q, torch.linalg.cholesky(cov_q), mean_p, torch.linalg.cholesky(cov_p))
'''

# name -> (edits (solution cell, old text, new text), graded cells that must lose points, (check, phrase))
BUGS = {
    "kl_in_the_wrong_direction": (
        [("gaussian_kl", "    d = mean_q.shape[-1]\n",
          "    mean_q, cov_q, mean_p, cov_p = mean_p, cov_p, mean_q, cov_q\n    d = mean_q.shape[-1]\n")],
        KL_CELLS, ("kl_exact", "wrong direction")),
    "kl_without_the_log_det_term": (
        [("gaussian_kl", "- d + log_det)", "- d)")], KL_CELLS, ("kl_exact", "log-det term")),
    "kl_against_the_prior_marginal": (
        [("elbo", "    for t in range(1, noise.shape[-2]):\n",
          "    prior_mean, prior_cov = m0, S0\n    for t in range(1, noise.shape[-2]):\n"),
         ("elbo", "        value = value - gaussian_kl(mean_q, covs[..., t - 1, :, :], (E @ previous)[..., 0], F)\n",
          PRIOR_MARGINAL)],
        {"test_elbo"}, ("elbo_exact", r"prior marginal p\(s_t\)")),
    "sample_drawn_with_randn_not_the_given_noise": (
        [("sample_markovian", "(scale[..., t - 1, :, :] @ noise[..., t, :, None])",
          "(scale[..., t - 1, :, :] @ torch.randn_like(noise[..., t, :, None]))")],
        BOTH, ("sampler_exact", "same noise gave different")),
    "sample_detached": (
        [("sample_markovian", "return torch.stack(states, dim=-2)", "return torch.stack(states, dim=-2).detach()")],
        BOTH, ("elbo_gradient_exact", "cut off from autograd")),
    "elbo_without_the_initial_state_term": (
        [("elbo", "value = -gaussian_kl(initial_mean, initial_cov, m0, S0)", "value = 0.0")],
        {"test_elbo"}, ("elbo_exact", "initial-state term")),
    "sample_with_the_covariance_not_its_cholesky_factor": (
        [("sample_markovian", "scale = torch.linalg.cholesky(covs)", "scale = covs"),
         ("sample_markovian", "(torch.linalg.cholesky(initial_cov) @ noise", "(initial_cov @ noise")],
        BOTH, ("sampler_exact", "Cholesky factor")),
    "kl_calls_the_reference": (
        [("gaussian_kl", None, CALL_REFERENCE_KL)], KL_CELLS,
        ("independent_kl", reference_phrase("mbrl_course.ssm"))),
}
VETOED = {"kl_calls_the_reference": "test_gaussian_kl"}
MORE_BUGS = {  # graded by direct calls of the checks only: (edits, check, phrase)
    "elbo_sums_over_the_samples": ([("elbo", "return value.mean(0)", "return value.sum(0)")], "elbo_exact",
                                   "summed over the N samples"),
    "emission_covariance_taken_for_a_std": ([("elbo", "covariance_matrix=D)", "covariance_matrix=D @ D.mT)")],
                                            "elbo_exact", "standard deviation"),
    "reconstruction_off_by_one": ([("elbo", "(C @ s[..., t, :, None])", "(C @ s[..., t - 1, :, None])")], "elbo_exact",
                                  "is scored at"),
    "elbo_adds_the_kl": ([("elbo", "value = value - gaussian_kl(", "value = value + gaussian_kl("),
                          ("elbo", "value = -gaussian_kl(initial_mean", "value = gaussian_kl(initial_mean")],
                         "elbo_gap", "above log p"),
    "sample_with_the_upper_factor": ([("sample_markovian", "(torch.linalg.cholesky(initial_cov) @ noise",
                                       "(torch.linalg.cholesky(initial_cov).mT @ noise")], "sampler_noise", "upper factor"),
    "sample_without_the_previous_state": ([("sample_markovian", "(weights[..., t - 1, :, :] @ s[..., None])[..., 0] + ",
                                            "")], "sampler_exact", "does not depend on s_"),
    "sample_uses_the_previous_steps_noise": ([("sample_markovian", "noise[..., t, :, None]", "noise[..., t - 1, :, None]")],
                                     "sampler_exact", "used ε_"),
    "kl_without_the_half": ([("gaussian_kl", "return 0.5 * (", "return (")], "kl_exact", "factor ½"),
    "kl_with_the_reversed_direction_seen_by_monte_carlo": (
        [("gaussian_kl", "    d = mean_q.shape[-1]\n",
          "    mean_q, cov_q, mean_p, cov_p = mean_p, cov_p, mean_q, cov_q\n    d = mean_q.shape[-1]\n")],
        "kl_monte_carlo", r"KL\(p \|\| q\)"),
}

ALTERNATIVE = [
    ("gaussian_kl", None,
     "    precision = torch.linalg.inv(cov_p)\n"
     "    diff = mean_p - mean_q\n"
     "    trace = torch.einsum('...ij,...ji->...', precision, cov_q)\n"
     "    quadratic = torch.einsum('...i,...ij,...j->...', diff, precision, diff)\n"
     "    return 0.5 * (trace + quadratic - mean_q.shape[-1] + torch.logdet(cov_p) - torch.logdet(cov_q))\n"),
    ("sample_markovian", None,
     "    root = torch.linalg.cholesky(covs)\n"
     "    s = initial_mean + torch.einsum('...ij,...j->...i', torch.linalg.cholesky(initial_cov), noise[..., 0, :])\n"
     "    path = [s]\n"
     "    for t in range(weights.shape[-3]):\n"
     "        s = (torch.einsum('...ij,...j->...i', weights[..., t, :, :], s) + offsets[..., t, :]\n"
     "             + torch.einsum('...ij,...j->...i', root[..., t, :, :], noise[..., t + 1, :]))\n"
     "        path.append(s)\n"
     "    return torch.stack(path, -2)\n"),
    ("elbo", None,
     "    s = sample_markovian(initial_mean, initial_cov, weights, offsets, covs, noise)\n"
     "    before, after = s[..., :-1, :], s[..., 1:, :]\n"
     "    mean_q = torch.einsum('...tij,...tj->...ti', weights, before) + offsets\n"
     "    mean_p = torch.einsum('...ij,...tj->...ti', E, before)\n"
     "    kl = gaussian_kl(mean_q, covs, mean_p, F.unsqueeze(-3)).sum(-1)\n"
     "    fit = torch.distributions.MultivariateNormal(torch.einsum('...ij,...tj->...ti', C, after),\n"
     "                                                 covariance_matrix=D.unsqueeze(-3)).log_prob(Y).sum(-1)\n"
     "    return (fit - kl).mean(0) - gaussian_kl(initial_mean, initial_cov, m0, S0)\n"),
]

STUDENTS = helpers.share_submissions(BUGS)
STUDENT_OF = {bug: student for student, bugs in STUDENTS.items() for bug in bugs}


# ------------------------------------------------------------------------------ the solution's functions
def solution_namespace(edits=()) -> dict:
    """The solution notebook's imports and answer cells, with ``edits`` applied (this process's threads kept)."""
    threads = torch.get_num_threads()
    try:
        return helpers.solution_namespace(SOURCE, edits)
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(torch.float32)  # the imports cell sets float64 for the notebook


@pytest.fixture(scope="module")
def hidden():
    """The instructor's hidden checks of this repository (solutions/hidden_checks/vssm.py)."""
    instructor.set_course_root(REPO)
    try:
        yield instructor.hidden_checks("vssm")
    finally:
        instructor.set_course_root(None)


def checks(hidden) -> dict:
    return {
        "kl_example": lambda ns: vt.check_kl_example(ns["gaussian_kl"]),
        "kl_monte_carlo": lambda ns: vt.check_kl_monte_carlo(ns["gaussian_kl"], seed=1),
        "kl_broadcast": lambda ns: vt.check_kl_broadcast(ns["gaussian_kl"], seed=2),
        "kl_exact": lambda ns: hidden.check_kl_exact(ns["gaussian_kl"], seed=3),
        "sampler_noise": lambda ns: vt.check_sampler_noise(ns["sample_markovian"], seed=4),
        "sampler_moments": lambda ns: vt.check_sampler_moments(ns["sample_markovian"], seed=5),
        "sampler_gradient": lambda ns: vt.check_sampler_gradient(ns["sample_markovian"], seed=6),
        "sampler_exact": lambda ns: hidden.check_sampler_exact(ns["sample_markovian"], seed=7),
        "elbo_exact_posterior": lambda ns: vt.check_elbo_exact_posterior(ns["elbo"], seed=8),
        "elbo_gap": lambda ns: vt.check_elbo_gap(ns["elbo"], seed=9),
        "elbo_gradient": lambda ns: vt.check_elbo_gradient(ns["elbo"], seed=10),
        "elbo_exact": lambda ns: hidden.check_elbo_exact(ns["elbo"], seed=11),
        "elbo_gradient_exact": lambda ns: hidden.check_elbo_gradient_exact(ns["elbo"], seed=12),
        "independent_kl": lambda ns: hidden.check_no_reference_calls("gaussian_kl", ns["gaussian_kl"], seed=13),
    }


# ------------------------------------------------------------------------------ one autograde run
@pytest.fixture(scope="module")
def graded(tmp_path_factory, kernel_env):
    course = new_course(tmp_path_factory.mktemp("graded-vssm") / "course", with_release=False)
    return helpers.autograde_class(course, ASSIGNMENT, NOTEBOOK, SOURCE, ALTERNATIVE, BUGS, STUDENTS, TIMEOUT)


def test_release_regenerated_from_solutions_equals_committed_assignments(graded):
    assert pipeline.release_differences(REPO, graded.course, ASSIGNMENT) == []


def test_release_leaks_no_solution_or_hidden_test():
    assert pipeline.release_problems(REPO, ASSIGNMENT) == []
    text = (REPO / "assignments" / ASSIGNMENT / NOTEBOOK).read_text()
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    for needle in ("torch.linalg.solve(cov_p, cov_q)", "torch.linalg.cholesky(initial_cov) @ noise",
                   "value = -gaussian_kl(initial_mean", "hidden_checks", "check_no_reference_calls",
                   "check_elbo_exact(", "slipped_elbo"):
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
    assert len(BUGS) >= 6 and len(BUGS) + len(MORE_BUGS) >= 12
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


# ------------------------------------------------------------------------------ the checks, called directly
@pytest.mark.parametrize("bug", sorted(BUGS) + sorted(MORE_BUGS))
def test_each_wrong_solution_is_told_what_is_wrong(hidden, bug):
    edits, check, phrase = (BUGS[bug][0], *BUGS[bug][2]) if bug in BUGS else MORE_BUGS[bug]
    run = checks(hidden)[check]
    run(solution_namespace())  # the correct solution passes this check ...
    with pytest.raises(GradingError, match=phrase):  # ... the wrong one fails it, saying why
        run(solution_namespace(edits))


def _kl_student(hidden, name: str):
    return lambda *args: hidden.kl_mistakes(*args)[name][0]


@pytest.mark.parametrize("mistake", ["reversed", "no_log_det", "log_det_swapped", "no_half", "no_minus_d", "quad_with_q"])
def test_every_catalogued_mistake_of_the_kl_is_named(hidden, mistake):
    args = vt._kl_pair(0)
    with pytest.raises(GradingError) as caught:
        hidden.check_kl_exact(_kl_student(hidden, mistake), seed=5)
    assert hidden.kl_mistakes(*args)[mistake][1] in str(caught.value)


@pytest.mark.parametrize("slip", ["covariance_not_cholesky", "upper_factor", "elementwise_sqrt", "ignores_previous",
                                  "no_offsets", "noise_off_by_one"])
def test_every_catalogued_slip_of_the_sampler_is_named(hidden, slip):
    hidden.check_sampler_exact(lambda *args: hidden.slipped_sample(*args), seed=5)  # no slip: passes
    with pytest.raises(GradingError) as caught:
        hidden.check_sampler_exact(lambda *args: hidden.slipped_sample(*args, slips=[slip]), seed=5)
    assert hidden.SAMPLE_MESSAGES[slip] in str(caught.value)


def _elbo_student(hidden, slips):
    def student(Y, m0, S0, E, F, C, D, *q_and_noise):
        problem = SimpleNamespace(Y=Y, m0=m0, S0=S0, E=E, F=F, C=C, D=D)
        return hidden.slipped_elbo(problem, q_and_noise[:5], q_and_noise[5], slips)
    return student


@pytest.mark.parametrize("slip", sorted(set(helpers.hidden("vssm").ELBO_MESSAGES)))
def test_every_catalogued_slip_of_the_elbo_is_named(hidden, slip):
    hidden.check_elbo_exact(_elbo_student(hidden, []), seed=5)  # no slip: passes
    with pytest.raises(GradingError) as caught:
        hidden.check_elbo_exact(_elbo_student(hidden, [slip]), seed=5)
    assert hidden.ELBO_MESSAGES[slip] in str(caught.value)


def test_a_detached_sample_is_named_by_the_gradient_check(hidden):
    hidden.check_elbo_gradient_exact(_elbo_student(hidden, []), seed=5)
    with pytest.raises(GradingError, match="cut off from autograd"):
        hidden.check_elbo_gradient_exact(_elbo_student(hidden, ["detached"]), seed=5)


def test_the_solution_passes_every_check_across_seeds(hidden):
    ns = solution_namespace()
    for seed in (101, 202):
        vt.check_kl_example(ns["gaussian_kl"])
        vt.check_kl_monte_carlo(ns["gaussian_kl"], seed)
        vt.check_kl_broadcast(ns["gaussian_kl"], seed)
        hidden.check_kl_exact(ns["gaussian_kl"], seed)
        vt.check_sampler_noise(ns["sample_markovian"], seed)
        vt.check_sampler_moments(ns["sample_markovian"], seed)
        vt.check_sampler_gradient(ns["sample_markovian"], seed)
        hidden.check_sampler_exact(ns["sample_markovian"], seed)
        hidden.check_sampler_batched(ns["sample_markovian"], seed)
        vt.check_elbo_exact_posterior(ns["elbo"], seed)
        vt.check_elbo_gap(ns["elbo"], seed)
        vt.check_elbo_bound(ns["elbo"], seed)
        vt.check_elbo_gradient(ns["elbo"], seed)
        hidden.check_elbo_exact(ns["elbo"], seed)
        hidden.check_elbo_gradient_exact(ns["elbo"], seed)
        hidden.check_elbo_batched(ns["elbo"], seed)
    for name in STUDENT_FUNCTIONS:
        hidden.check_no_reference_calls(name, ns[name], seed=7)


def test_a_crash_and_a_missing_function_get_messages_not_exceptions():
    with pytest.raises(IndexError):  # the Report turns this into "your code raised ..."
        vt.check_kl_example(lambda mean_q, cov_q, mean_p, cov_p: mean_q[7])
    with pytest.raises(GradingError, match="not implemented"):
        vt.check_elbo_gap(lambda *a: (_ for _ in ()).throw(NotImplementedError()))
    with pytest.raises(GradingError, match=r"\(N, T\+1, d\)"):
        vt.check_sampler_noise(lambda m, P, A, b, Q, noise: noise[..., 1:, :])
    with pytest.raises(GradingError, match="returned shape"):
        vt.check_kl_broadcast(lambda mean_q, cov_q, mean_p, cov_p: (mean_q - mean_p).sum() + cov_q.sum() * 0)


# ------------------------------------------------------------------------------ the oracles themselves
def _ssm(problem: vt.Problem) -> LinearGaussianSSM:
    return LinearGaussianSSM(problem.m0, problem.S0, problem.E, problem.F, problem.C, problem.D)


@pytest.mark.parametrize("sizes", [(2, 2, 5), (3, 1, 7)])
def test_the_dense_joint_gives_the_kalman_likelihood_and_the_smoothers_posterior(sizes):
    """The visible checks' log p(Y) (the dense joint Gaussian) is the Kalman filter's, and their exact Markovian
    posterior is the package's (from the RTS smoother): the same means and scales along the same noise."""
    problem = vt.random_problem(3, *sizes)
    ssm = _ssm(problem)
    assert abs(problem.log_evidence - float(kalman_filter(ssm, problem.Y).log_likelihood)) < 1e-9
    noise = vt.standard_noise(0, 4, sizes[2] + 1, sizes[0])
    package = ExactLinearGaussianPosterior(ssm).sample(problem.Y[None], noise=noise[:, None], num_samples=4)
    hidden = helpers.hidden("vssm")
    torch.testing.assert_close(package.states[:, 0], hidden.sampler_oracle(*problem.posterior.args(), noise))


def test_the_package_elbo_of_the_exact_posterior_on_sigma_points_is_log_p(hidden):
    problem = vt.random_problem(4)
    noise = vt.sigma_noise(problem.posterior.num_steps, 2)
    value = hidden.elbo_oracle(problem, problem.posterior.args(), noise)
    assert abs(float(value.detach()) - problem.log_evidence) < 1e-8
    model = GenerativeModel.from_linear_gaussian(_ssm(problem))
    package = estimate_elbo(model, ExactLinearGaussianPosterior(_ssm(problem)), problem.Y[None],
                            num_samples=noise.shape[0], noise=noise[:, None]).value
    torch.testing.assert_close(package[0], value)


def test_the_slip_free_elbo_equals_the_package_and_every_slip_changes_it(hidden):
    problem, q, noise = hidden._elbo_problem(0)
    exact = hidden.elbo_oracle(problem, q.args(), noise)
    torch.testing.assert_close(hidden.slipped_elbo(problem, q.args(), noise), exact)
    torch.testing.assert_close(hidden.slipped_sample(*q.args(), noise), hidden.sampler_oracle(*q.args(), noise))
    for slip in hidden.ELBO_SLIPS:
        if slip != "detached":
            assert abs(float((hidden.slipped_elbo(problem, q.args(), noise, [slip]) - exact).detach())) > 1e-3, slip
    with pytest.raises(ValueError, match="slips"):
        hidden.slipped_elbo(problem, q.args(), noise, ["no_such_slip"])


def test_the_gap_is_the_kl_to_the_posterior_and_the_bound_holds():
    problem = vt.random_problem(0)
    q = vt.perturbed(problem.posterior, 0)
    assert problem.expected_elbo(problem.posterior) == pytest.approx(problem.log_evidence, abs=1e-8)
    assert problem.expected_elbo(q) < problem.log_evidence - 1.0  # the perturbed q is measurably worse


def test_the_worked_example_and_the_kl_oracle_are_computed_right(hidden):
    example = [torch.tensor(vt.KL_EXAMPLE[key], dtype=DTYPE) for key in ("mean_q", "cov_q", "mean_p", "cov_p")]
    chol = torch.linalg.cholesky
    assert float(kl_divergence(example[0], chol(example[1]), example[2], chol(example[3]))) == pytest.approx(
        vt.KL_EXAMPLE_RESULT, abs=1e-6)
    assert float(kl_divergence(example[2], chol(example[3]), example[0], chol(example[1]))) == pytest.approx(
        vt.KL_EXAMPLE_REVERSED, abs=1e-6)
    mean_q, cov_q, mean_p, cov_p = vt._kl_pair(0)
    want = torch.distributions.kl_divergence(vt._mvn(mean_q, cov_q), vt._mvn(mean_p, cov_p))
    torch.testing.assert_close(hidden.kl_oracle(mean_q, cov_q, mean_p, cov_p), want)


def test_the_config_blocks_the_reference_modules_that_exist():
    modules = pipeline.reference_modules(REPO, ASSIGNMENT)
    assert set(modules) == set(REFERENCE_PACKAGES)


# ------------------------------------------------------------------------------ what students can see and import
def _is_reference(module: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in REFERENCE_PACKAGES)


def test_the_visible_checks_import_no_reference_module_and_offer_no_oracle(hidden):
    imported = helpers.imports_in_source(REPO / "mbrl_course" / "grading" / "vssm.py")
    assert not [m for m in imported if _is_reference(m) or m.startswith("mbrl_course.filters")], imported
    modules, _ = helpers.run_fresh("import mbrl_course.grading.vssm")
    assert "mbrl_course.grading.vssm" in modules and not any(map(_is_reference, modules))
    from mbrl_course.grading import export

    assert export._top_level_names(Path(hidden.__file__).read_text()).isdisjoint(dir(vt))
    for name in ("kl_oracle", "sampler_oracle", "elbo_oracle", "slipped_elbo", "check_elbo_exact"):
        assert hasattr(hidden, name) and not hasattr(vt, name), name


def test_the_visible_part_of_the_notebook_passes_without_the_reference():
    """What a student's copy runs (imports, answers, the visible checks) passes on the solution and imports
    no reference module."""
    modules, out = helpers.run_fresh(helpers.visible_code(SOURCE))
    assert "[FAIL]" not in out and out.count("[PASS]") >= 3 * len(GRADED_CELLS), out
    assert not [m for m in modules if _is_reference(m)], modules


def test_the_notebook_cells_that_run_in_the_sandbox_import_no_reference_module(tmp_path):
    assert helpers.sandbox_cells_importing(SOURCE, _is_reference, tmp_path) == {}


def test_the_hidden_checks_are_not_installed_and_the_release_names_none_of_them(hidden):
    assert Path(hidden.__file__).name == "vssm.py" and (REPO / instructor.HIDDEN_DIR / "vssm.py").is_file()
    helpers.expect_release_names_no_hidden_check(hidden, REPO / "assignments" / ASSIGNMENT / NOTEBOOK, SOURCE)
    helpers.expect_no_hidden_name_in_the_grading_package(REPO / instructor.HIDDEN_DIR / "vssm.py")


def test_graded_cells_declare_their_points_and_hide_tests():
    helpers.expect_graded_cells_convention(SOURCE, GRADED_CELLS, "vssm", "vssm_tests")
    assert cell_by_id(nbformat.read(SOURCE, as_version=4), "imports").metadata.nbgrader.locked
