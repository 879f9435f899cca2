"""The grading of Assignment 3, "Learn the model yourself: probabilistic ensembles and PETS", end to end.

One nbgrader autograde run (on a copy of the course in tmp_path) grades a class built from the
solution notebook: the reference solution (full marks), the untouched release (0 in every cell), an
alternative correct solution (another normalisation guard, the NLL from torch.distributions, another
particle layout and a balanced deal of the members: full marks) and realistic wrong solutions, each of
which loses points in the cells where its bug is (and keeps them elsewhere). The checks are also
called directly: each wrong solution is told what is wrong, the solution passes every check on other
seeds, and the instructor's oracles agree with the reference implementation (mbrl_course.models,
mbrl_course.data). The visible checks, installed with the package, import none of the reference
packages; the hidden ones are loaded from solutions/hidden_checks.
"""

from __future__ import annotations

import ast
import re
from types import SimpleNamespace

import grading_helpers as helpers
import nbformat
import pytest
import torch
from grading_helpers import REPO, apply_edits, nbgrader_id, new_course

from mbrl_course.grading import ensembles as et
from mbrl_course.grading import instructor, pipeline
from mbrl_course.grading.report import GradingError

ASSIGNMENT = "03-ensembles-pets"
NOTEBOOK = "03-ensembles-pets.ipynb"
SOURCE = REPO / "solutions" / ASSIGNMENT / NOTEBOOK
TIMEOUT = 60  # seconds per cell while grading here; the slowest test cell takes a few seconds
GRADED_CELLS = {"test_prepare_training_data": 3, "test_bound_log_variance": 2, "test_gaussian_nll": 2,
                "test_bootstrap_indices": 2, "test_train_ensemble": 3, "test_predict_next_state": 2,
                "test_expected_returns": 3, "test_pets_action": 2}
MAX_SCORE = sum(GRADED_CELLS.values())
REFERENCE_PACKAGES = ("mbrl_course.models", "mbrl_course.data", "mbrl_course.agents", "mbrl_course.runs")
STUDENT_FUNCTIONS = ("prepare_training_data", "bound_log_variance", "gaussian_nll", "bootstrap_indices",
                     "train_ensemble", "predict_next_state", "expected_returns", "pets_action")

TS1_BRANCH = ('        if propagation == "ts1":\n'
              "            members = torch.randint(0, ensemble_size, (total,), generator=generator)  "
              "# TS1: afresh every step\n")
CALL_REFERENCE_NLL = '''    from mbrl_course.models import gaussian_nll as reference

    return reference(mean, log_var, target).mean(dim=(-2, -1))
'''
CALL_REFERENCE_NORMALIZER = '''    from mbrl_course.data import Normalizer

    inputs, changes = torch.cat([states, actions], dim=-1), next_states - states
    stats = {}
    for key, values in (("input", inputs), ("target", changes)):
        normalizer = Normalizer(values.shape[1], dtype=values.dtype)
        normalizer.fit(values)
        stats[f"{key}_mean"], stats[f"{key}_std"] = normalizer.mean, normalizer.std
    return (inputs - stats["input_mean"]) / stats["input_std"], (changes - stats["target_mean"]) / stats["target_std"], stats
'''
BOOTSTRAP_PERMUTATIONS = ("    return torch.stack([torch.randperm(num_points, generator=generator) "
                          "for _ in range(ensemble_size)])\n")



def reference_phrase(package: str) -> str:
    """What a student who calls ``package`` reads: the check's message here, the sandbox's when grading."""
    name = re.escape(package)
    return rf"reference implementation in {name}|importing {name} \(the reference implementation"


# name -> (edits (solution cell, old text, new text), graded cells that must lose points, (check, phrase))
BUGS = {
    "log_variance_used_as_variance": (
        [("gaussian_nll", "(target - mean) ** 2 * torch.exp(-log_var)", "(target - mean) ** 2 / log_var")],
        {"test_gaussian_nll", "test_train_ensemble"}, ("nll_exact", "as if it were the variance")),
    "nll_missing_log_variance_term": (
        [("gaussian_nll", "+ log_var + math.log(2 * math.pi)", "+ math.log(2 * math.pi)")],
        {"test_gaussian_nll", "test_train_ensemble"}, ("nll_exact", "log-variance term")),
    "log_variance_not_bounded": (
        [("bound_log_variance", None, "    return log_var\n")],
        {"test_bound_log_variance"}, ("bound_exact", "not bounded at all")),
    "hard_clamp_on_log_variance": (
        [("bound_log_variance", None, "    return torch.clamp(log_var, min_logvar, max_logvar)\n")],
        {"test_bound_log_variance"}, ("bound_gradients", "hard clamp")),
    "zero_std_not_guarded": (
        [("prepare_training_data", "torch.where(std < 1e-6, torch.ones_like(std), std)", "std")],
        {"test_prepare_training_data"}, ("prepare_constant", "never change")),
    "unbiased_std": (
        [("prepare_training_data", "correction=0", "correction=1")],
        {"test_prepare_training_data"}, ("prepare_standardised", "n − 1")),
    "targets_are_next_states": (
        [("prepare_training_data", "changes = next_states - states  # y = Δi = i' − i",
          "changes = next_states  # the targets")],
        {"test_prepare_training_data"}, ("prepare_round_trip", "next states i'")),
    "normalised_in_training_only": (
        [("predict_next_state", 'inputs = (torch.cat([states, actions], dim=-1) - normalizers["input_mean"]) '
                                '/ normalizers["input_std"]', "inputs = torch.cat([states, actions], dim=-1)")],
        {"test_predict_next_state"}, ("predict_inputs", "raw inputs")),
    "log_variance_not_rescaled": (
        [("predict_next_state", "log_var + 2 * torch.log(target_std)", "log_var")],
        {"test_predict_next_state"}, ("predict_zero", "normalised units")),
    "bootstrap_without_replacement": (
        [("bootstrap_indices", None, BOOTSTRAP_PERMUTATIONS)],
        {"test_bootstrap_indices"}, ("bootstrap_resamples", "permutation")),
    "bootstrap_ignores_the_generator": (
        [("bootstrap_indices", ", generator=generator)", ")")],
        {"test_bootstrap_indices"}, ("bootstrap_generator", "seeded alike")),
    "every_member_trained_on_the_same_data": (
        [("train_ensemble", "shuffled = member_indices.gather(1, order)  # each member's own rows, in a new order",
          "shuffled = torch.randperm(rows_per_member, generator=generator).expand(ensemble_size, -1)")],
        {"test_train_ensemble"}, ("train_own_data", "trained on the same data")),
    "particles_redealt_every_step": (
        [("expected_returns", TS1_BRANCH,
          "        members = torch.randint(0, ensemble_size, (total,), generator=generator)  # a member per particle\n")],
        {"test_expected_returns"}, ("returns_kept", "another member at a later step")),
    "returns_summed_over_particles": (
        [("expected_returns", "returns.view(population, particles).mean(dim=1)",
          "returns.view(population, particles).sum(dim=1)")],
        {"test_expected_returns", "test_pets_action"}, ("returns_ts_inf", "summed")),
    "particles_never_sampled": (
        [("expected_returns", "following = mean + torch.exp(0.5 * log_var) * noise", "following = mean")],
        {"test_expected_returns"}, ("returns_noise", "do not move")),
    "calls_the_reference_nll": (
        [("gaussian_nll", None, CALL_REFERENCE_NLL)],
        {"test_gaussian_nll", "test_train_ensemble"}, ("independent_nll", reference_phrase("mbrl_course.models"))),
    "calls_the_reference_normalizer": (
        [("prepare_training_data", None, CALL_REFERENCE_NORMALIZER)],
        {"test_prepare_training_data"}, ("independent_prepare", reference_phrase("mbrl_course.data"))),
}
VETOED = {"calls_the_reference_nll": "test_gaussian_nll", "calls_the_reference_normalizer": "test_prepare_training_data"}

ALTERNATIVE = [
    ("prepare_training_data", "torch.where(std < 1e-6, torch.ones_like(std), std)", "std.clamp_min(1e-6)"),
    ("gaussian_nll", None, "    normal = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))\n"
                           "    return -normal.log_prob(target).mean(dim=(-2, -1))\n"),
    ("bound_log_variance", None, "    log_var = max_logvar - F.softplus(max_logvar - log_var)\n"
                                 "    return min_logvar - F.logsigmoid(min_logvar - log_var)  # softplus(z) = −log σ(−z)\n"),
    # particle m = p·N + n (sequences tiled P times) and a balanced deal of the members
    ("expected_returns", "actions = action_sequences.repeat_interleave(particles, dim=0)",
     "actions = action_sequences.repeat(particles, 1, 1)"),
    ("expected_returns", "members = torch.randint(0, ensemble_size, (total,), generator=generator)  # TS∞: k_p, once",
     "members = torch.randperm(total, generator=generator) % ensemble_size  # TS∞: a balanced deal, once"),
    ("expected_returns", "returns.view(population, particles).mean(dim=1)",
     "returns.view(particles, population).mean(dim=0)"),
]


# ------------------------------------------------------------------------------ the solution's functions
def solution_namespace(edits=()) -> dict:
    """The solution notebook's imports, network, fit_model and answer cells, with ``edits`` applied."""
    threads = torch.get_num_threads()
    try:  # the notebook sets one torch thread; keep this process's setting
        return helpers.solution_namespace(SOURCE, edits, extra_cells=("imports", "network", "fit_model"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hidden():
    """The instructor's hidden checks of this repository (solutions/hidden_checks/ensembles.py)."""
    instructor.set_course_root(REPO)
    try:
        yield instructor.hidden_checks("ensembles")
    finally:
        instructor.set_course_root(None)


def checks(hidden) -> dict:
    return {
        "nll_exact": lambda ns: hidden.check_nll_exact(ns["gaussian_nll"], seed=1),
        "bound_exact": lambda ns: hidden.check_bound_exact(ns["bound_log_variance"], seed=2),
        "bound_gradients": lambda ns: et.check_bound_gradients(ns["bound_log_variance"], seed=3),
        "prepare_constant": lambda ns: et.check_prepare_constant_dimension(ns["prepare_training_data"], seed=4),
        "prepare_standardised": lambda ns: et.check_prepare_standardised(ns["prepare_training_data"], seed=5),
        "prepare_round_trip": lambda ns: et.check_prepare_round_trip(ns["prepare_training_data"], seed=6),
        "prepare_exact": lambda ns: hidden.check_prepare_exact(ns["prepare_training_data"], seed=7),
        "predict_inputs": lambda ns: et.check_predict_normalises_inputs(ns["predict_next_state"], seed=8),
        "predict_zero": lambda ns: et.check_predict_zero_network(ns["predict_next_state"], seed=9),
        "predict_exact": lambda ns: hidden.check_predict_exact(ns["predict_next_state"], seed=10),
        "bootstrap_resamples": lambda ns: et.check_bootstrap_resamples(ns["bootstrap_indices"], seed=11),
        "bootstrap_generator": lambda ns: et.check_uses_generator(
            "bootstrap_indices", lambda g: ns["bootstrap_indices"](30, 4, g), seed=12),
        "train_own_data": lambda ns: et.check_train_members_own_data(ns["train_ensemble"], seed=13),
        "returns_kept": lambda ns: et.check_returns_members_kept(ns["expected_returns"], seed=14),
        "returns_ts_inf": lambda ns: et.check_returns_ts_inf_exact(ns["expected_returns"], seed=15),
        "returns_noise": lambda ns: hidden.check_returns_noise(ns["expected_returns"], seed=16),
        "returns_exact": lambda ns: hidden.check_returns_exact(ns["expected_returns"], seed=17),
        "returns_ts1": lambda ns: hidden.check_returns_ts1(ns["expected_returns"], seed=18),
        "independent_nll": lambda ns: hidden.check_no_reference_calls("gaussian_nll", ns["gaussian_nll"], seed=19),
        "independent_prepare": lambda ns: hidden.check_no_reference_calls("prepare_training_data",
                                                                   ns["prepare_training_data"], seed=20),
    }


# ------------------------------------------------------------------------------ one autograde run
@pytest.fixture(scope="module")
def graded(tmp_path_factory, kernel_env):
    course = new_course(tmp_path_factory.mktemp("graded-ensembles") / "course", with_release=False)
    pipeline.release(course, ASSIGNMENT)
    release_nb = nbformat.read(course / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    reference = pipeline.fill_release(release_nb, nbformat.read(SOURCE, as_version=4))
    students = {"reference_solution": reference, "untouched_release": release_nb,
                "another_correct_solution": apply_edits(reference, ALTERNATIVE)}
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
    for needle in ("torch.where(std < 1e-6", "math.log(2 * math.pi))", "F.softplus(max_logvar - log_var)",
                   "torch.randint(0, num_points", "member_indices.gather(1, order)", "2 * torch.log(target_std)",
                   "hidden_checks", "check_no_reference_calls", "check_returns_noise", "check_train_learns_noise"):
        assert needle not in text, f"the release leaks {needle!r}"
    assert text.count("raise NotImplementedError()") == len(STUDENT_FUNCTIONS)
    nb = nbformat.read(REPO / "assignments" / ASSIGNMENT / NOTEBOOK, as_version=4)
    assert f"assignments/{ASSIGNMENT}/{NOTEBOOK}" in nb.cells[0].source and "solutions/" not in nb.cells[0].source


def test_reference_solution_gets_full_marks(graded):
    result = graded.results["reference_solution"]
    assert (result.status, result.reason) == ("graded", "")
    assert result.max_score == MAX_SCORE >= 15
    assert result.cells == {name: float(points) for name, points in GRADED_CELLS.items()}


def test_another_correct_solution_gets_full_marks(graded):
    result = graded.results["another_correct_solution"]
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
            assert result.cells[name] < points, f"{bug}: {name} should lose points ({result.cells})"
        else:
            assert result.cells[name] == points, f"{bug}: {name} should keep its points ({result.cells})"
    if bug in VETOED:
        assert result.cells[VETOED[bug]] == 0


@pytest.mark.parametrize("bug", sorted(BUGS))
def test_the_graded_notebook_names_the_mistake(graded, bug):
    """The student reads what is wrong in the cell where the points were lost."""
    _, losing, (_, phrase) = BUGS[bug]
    nb = nbformat.read(graded.course / "autograded" / bug / ASSIGNMENT / NOTEBOOK, as_version=4)
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
    ([("gaussian_nll", "nll.mean(dim=(-2, -1))", "nll.sum(dim=(-2, -1))")], "nll_exact", "average them"),
    ([("gaussian_nll", "nll = 0.5 * (", "nll = (")], "nll_exact", "factor ½"),
    ([("gaussian_nll", "torch.exp(-log_var)", "torch.exp(log_var)")], "nll_exact", "e\\^\\{\\+lv\\}"),
    ([("gaussian_nll", " + math.log(2 * math.pi))", ")")], "nll_exact", "½ log 2π is missing"),
    ([("gaussian_nll", "(target - mean) ** 2 * torch.exp(-log_var) + log_var",
       "(target - mean) ** 2 / log_var + torch.log(log_var)")], "nll_exact", "may be negative"),
    ([("bound_log_variance", "    return min_logvar + F.softplus(log_var - min_logvar)  # above min_lv",
       "    return log_var")], "bound_exact", "only the upper bound"),
    ([("bound_log_variance", None, "    log_var = min_logvar + F.softplus(log_var - min_logvar)\n"
                                   "    return max_logvar - F.softplus(max_logvar - log_var)\n")],
     "bound_exact", "other order"),
    ([("prepare_training_data", "(inputs - input_mean) / input_std, (changes - target_mean) / target_std",
       "(inputs - input_mean) / input_std**2, (changes - target_mean) / target_std**2")],
     "prepare_exact", "variance"),
    ([("prepare_training_data", "torch.cat([states, actions], dim=-1)  # x = [i, u]",
       "torch.cat([actions, states], dim=-1)  # x = [u, i]")], "prepare_round_trip", "\\[u, i\\]"),
    ([("predict_next_state", "return states + normalizers", "return normalizers")], "predict_zero",
     "add the state"),
    ([("predict_next_state", "net(inputs, members)", "net(inputs, torch.zeros_like(members))")],
     "predict_exact", "member 0"),
    ([("predict_next_state", "log_var + 2 * torch.log(target_std)", "log_var + torch.log(target_std)")],
     "predict_zero", "not log s_y"),
    ([("expected_returns", "reward_fn(current, actions[:, t], following)",
       "reward_fn(following, actions[:, t], current)")], "returns_exact", "g\\(i_\\{t\\+1\\}, u_t, i_t\\)"),
    ([("expected_returns", "torch.exp(0.5 * log_var) * noise", "torch.exp(log_var) * noise")],
     "returns_noise", "standard deviation e\\^\\{lv\\}"),
    ([("expected_returns", TS1_BRANCH, "")], "returns_ts1", "afresh at every step"),
    ([("bootstrap_indices", None, "    return torch.randint(0, num_points, (num_points,), generator=generator)"
                                  ".expand(ensemble_size, -1)\n")], "bootstrap_resamples", "same resample"),
])
def test_more_mistakes_get_their_own_message(hidden, edits, check, phrase):
    run = checks(hidden)[check]
    run(solution_namespace())
    with pytest.raises(GradingError, match=phrase):
        run(solution_namespace(edits))


def test_the_solution_passes_every_check_across_seeds(hidden):
    ns = solution_namespace()
    for seed in (101, 202):
        et.check_prepare_round_trip(ns["prepare_training_data"], seed)
        et.check_prepare_standardised(ns["prepare_training_data"], seed)
        et.check_prepare_constant_dimension(ns["prepare_training_data"], seed)
        hidden.check_prepare_exact(ns["prepare_training_data"], seed)
        et.check_bound_limits(ns["bound_log_variance"], seed)
        et.check_bound_gradients(ns["bound_log_variance"], seed)
        hidden.check_bound_exact(ns["bound_log_variance"], seed)
        hidden.check_nll_exact(ns["gaussian_nll"], seed)
        hidden.check_nll_gradient(ns["gaussian_nll"], seed)
        et.check_bootstrap_resamples(ns["bootstrap_indices"], seed)
        hidden.check_bootstrap_statistics(ns["bootstrap_indices"], seed)
        et.check_train_members_own_data(ns["train_ensemble"], seed, num_members=3)
        hidden.check_train_learns_noise(ns["train_ensemble"], seed)
        hidden.check_train_uses_generator(ns["train_ensemble"], seed)
        et.check_predict_zero_network(ns["predict_next_state"], seed)
        et.check_predict_normalises_inputs(ns["predict_next_state"], seed)
        hidden.check_predict_exact(ns["predict_next_state"], seed)
        et.check_returns_calls(ns["expected_returns"], seed)
        et.check_returns_ts_inf_exact(ns["expected_returns"], seed)
        et.check_returns_members_kept(ns["expected_returns"], seed)
        hidden.check_returns_exact(ns["expected_returns"], seed)
        hidden.check_returns_members_uniform(ns["expected_returns"], seed)
        hidden.check_returns_noise(ns["expected_returns"], seed)
        hidden.check_returns_ts1(ns["expected_returns"], seed)
        hidden.check_returns_generator(ns["expected_returns"], seed)
        et.check_pets_action_objective(ns["pets_action"], seed)
        hidden.check_pets_action_closed_loop(ns["pets_action"], seed)
        for name in STUDENT_FUNCTIONS:
            hidden.check_no_reference_calls(name, ns[name], seed)


def test_a_crash_and_a_missing_function_get_messages_not_exceptions():
    def crashes(states, actions, next_states):
        return states[:, 7]

    with pytest.raises(IndexError):
        et.check_prepare_shapes(crashes)  # the Report turns this into "your code raised ..."
    with pytest.raises(GradingError, match="not implemented"):
        et.check_nll_values(lambda *a: (_ for _ in ()).throw(NotImplementedError()))
    def normalised(states, actions, normalizers):
        return (torch.cat([states, actions], -1) - normalizers["input_mean"]) / normalizers["input_std"]

    with pytest.raises(GradingError, match="expected a pair"):
        et.check_predict_shapes(lambda net, normalizers, states, actions, members: net(
            normalised(states, actions, normalizers), members)[0])
    with pytest.raises(GradingError, match="pass the member index of every row"):  # the stand-in network says
        et.check_predict_shapes(lambda net, normalizers, states, actions, members: net(
            normalised(states, actions, normalizers)))
    with pytest.raises(GradingError, match=r"normalised inputs x̃ of shape \(M, S \+ A\)"):
        et.check_predict_shapes(lambda net, normalizers, states, actions, members: net(states, members))


# ------------------------------------------------------------------------------ the oracles themselves
def test_oracles_agree_with_the_reference_implementation(hidden):
    from mbrl_course.data import Normalizer
    from mbrl_course.models import gaussian_nll
    from mbrl_course.models.ensemble import _bound_logvar

    gen = torch.Generator().manual_seed(0)
    mean, target = torch.randn(3, 5, 2, generator=gen, dtype=torch.float64), torch.randn(3, 5, 2, generator=gen,
                                                                                         dtype=torch.float64)
    log_var = torch.randn(3, 5, 2, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(hidden.nll_oracle(mean, log_var, target),
                               gaussian_nll(mean, log_var, target).mean(dim=(-2, -1)))
    max_lv, min_lv = torch.rand(3, 1, 2, generator=gen, dtype=torch.float64), -10 + torch.rand(3, 1, 2, generator=gen,
                                                                                               dtype=torch.float64)
    wide = 30 * log_var
    torch.testing.assert_close(hidden.bound_oracle(wide, max_lv, min_lv), _bound_logvar(wide, max_lv, min_lv))
    got = torch.tensor(et.BOUND_EXAMPLE_RESULT, dtype=torch.float64)
    want = _bound_logvar(torch.tensor(et.BOUND_EXAMPLE_LOG_VAR, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64),
                         torch.tensor(-10.0, dtype=torch.float64))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    example = {key: torch.tensor(value, dtype=torch.float64) for key, value in et.NLL_EXAMPLE.items()}
    torch.testing.assert_close(torch.tensor(et.NLL_EXAMPLE_RESULT, dtype=torch.float64),
                               gaussian_nll(example["mean"], example["log_var"], example["target"]).mean(dim=(-2, -1)))
    states, actions, next_states = et.random_transitions(3, 40, 3, 2)
    inputs, targets, stats = hidden.prepare_oracle(states, actions, next_states)
    for key, values in (("input", torch.cat([states, actions], -1)), ("target", next_states - states)):
        normalizer = Normalizer(values.shape[1], dtype=torch.float64)
        normalizer.fit(values)
        torch.testing.assert_close(stats[f"{key}_mean"], normalizer.mean)
        torch.testing.assert_close(stats[f"{key}_std"], normalizer.std)
    torch.testing.assert_close(inputs, (torch.cat([states, actions], -1) - stats["input_mean"]) / stats["input_std"])


def test_the_oracle_of_predict_matches_a_trained_reference_ensemble(hidden):
    """predict_oracle with a GaussianEnsemble's normalised network gives what GaussianEnsemble.predict gives."""
    from mbrl_course.models import GaussianEnsemble

    model = GaussianEnsemble(2, 1, ensemble_size=3, hidden_size=8, num_layers=1, predict_reward=False,
                             dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    model.input_normalizer.mean.copy_(torch.tensor([0.5, -1.0, 0.2], dtype=torch.float64))
    model.input_normalizer.std.copy_(torch.tensor([2.0, 0.5, 1.5], dtype=torch.float64))
    model.output_normalizer.mean.copy_(torch.tensor([0.1, -0.2], dtype=torch.float64))
    model.output_normalizer.std.copy_(torch.tensor([0.3, 0.05], dtype=torch.float64))
    states, actions = torch.randn(6, 2, generator=gen, dtype=torch.float64), torch.randn(6, 1, generator=gen,
                                                                                         dtype=torch.float64)
    members = torch.tensor([0, 1, 2, 2, 1, 0])

    def net(x, members):  # the normalised network, row m through member members[m]
        mean, log_var = model._normalized_forward(x.expand(3, -1, -1), None)
        rows = torch.arange(x.shape[0])
        return mean[members, rows], log_var[members, rows]

    normalizers = {"input_mean": model.input_normalizer.mean, "input_std": model.input_normalizer.std,
                   "target_mean": model.output_normalizer.mean, "target_std": model.output_normalizer.std}
    mean, log_var = hidden.predict_oracle(net, normalizers, states, actions, members)
    want_mean, want_var = model.predict(states, actions)
    rows = torch.arange(6)
    torch.testing.assert_close(mean, want_mean[members, rows])
    torch.testing.assert_close(log_var.exp(), want_var[members, rows])


def test_the_worked_examples_are_computed_right():
    assert len(et.BOUND_EXAMPLE_LOG_VAR) == len(et.BOUND_EXAMPLE_RESULT)
    assert et.BOUND_EXAMPLE_RESULT[0] == pytest.approx(-10.0) and et.BOUND_EXAMPLE_RESULT[-1] > 0.5


# ------------------------------------------------------------------------------ what students can see and import
def _imported_modules(source: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _is_reference(module: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in REFERENCE_PACKAGES)


def test_the_visible_checks_import_no_reference_package():
    source = (REPO / "mbrl_course" / "grading" / "ensembles.py").read_text()
    imported = _imported_modules(source)
    assert not [m for m in imported if _is_reference(m)], imported
    assert "importlib" not in source and "__import__" not in source


def test_the_notebook_cells_that_run_in_the_sandbox_import_no_reference_package():
    from IPython.core.inputtransformer2 import TransformerManager

    nb = nbformat.read(SOURCE, as_version=4)
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("grade"):
            continue  # test cells run in the grader (their hidden regions load the instructor's checks)
        source = TransformerManager().transform_cell(cell.source)  # %pip and friends as the Python IPython runs
        bad = [m for m in _imported_modules(source) if _is_reference(m)]
        assert not bad, f"cell {nbgrader_id(cell) or cell.get('id')} imports {bad}"


def test_the_hidden_checks_are_not_installed_with_the_package():
    assert not (REPO / "mbrl_course" / "grading" / "hidden_checks").exists()
    assert (REPO / instructor.HIDDEN_DIR / "ensembles.py").is_file()
    release = (REPO / "assignments" / ASSIGNMENT / NOTEBOOK).read_text()
    assert "hidden_checks" not in release


def test_no_hidden_check_shares_a_name_with_the_installed_grading_package():
    """The student export refuses a package that defines a name of the hidden checks (mbrl_course.grading.export)."""
    from mbrl_course.grading import export

    hidden_names = export._top_level_names((REPO / instructor.HIDDEN_DIR / "ensembles.py").read_text())
    for path in sorted((REPO / "mbrl_course" / "grading").glob("*.py")):
        assert not export._top_level_names(path.read_text()) & hidden_names, path


def test_graded_cells_declare_their_points_and_hide_tests():
    nb = nbformat.read(SOURCE, as_version=4)
    cells = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
    assert {c.metadata.nbgrader.grade_id: c.metadata.nbgrader.points for c in cells} == GRADED_CELLS
    for cell in cells:
        assert f"points={cell.metadata.nbgrader.points})" in cell.source
        visible, hidden_part = cell.source.split("### BEGIN HIDDEN TESTS")
        assert cell.source.rstrip().endswith("report.score()")
        assert 'hidden_checks("ensembles")' in hidden_part and "check_no_reference_calls" in hidden_part
        assert "veto=True" in hidden_part and "hidden." not in visible
        assert cell.metadata.nbgrader.locked
        weights = [_weight(line) for line in visible.splitlines() if "report.part(" in line]
        hidden_weights = [_weight(line) for line in hidden_part.splitlines()
                          if "report.part(" in line and "veto=True" not in line]
        share = sum(weights) / (sum(weights) + sum(hidden_weights))
        assert 0.4 <= share <= 0.6, f"{cell.metadata.nbgrader.grade_id}: visible parts carry {share:.0%}"


def _weight(line: str) -> float:
    return float(line.split("weight=")[1].split(")")[0]) if "weight=" in line else 1.0
