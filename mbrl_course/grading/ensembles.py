"""Visible checks for Assignment 3, "Learn the model yourself: probabilistic ensembles and PETS"
(``solutions/03-ensembles-pets``).

The student writes PETS' model f_ψ(i, u) = 1/K Σ_k N(μ_ψ^k(i, u), Σ_ψ^k(i, u)) and the planner's
objective, in the lecture's notation (state i, action u, reward g, data D_real):

- ``prepare_training_data(states, actions, next_states) -> (inputs, targets, normalizers)``: the
  network's inputs x̃ = ([i, u] − m_x) / s_x and targets ỹ = (Δi − m_y) / s_y, Δi = i' − i, with
  ``normalizers = {"input_mean", "input_std", "target_mean", "target_std"}`` (biased std; a
  dimension that never changes gets s = 1);
- ``bound_log_variance(log_var, max_logvar, min_logvar)``: PETS' soft bounds with softplus;
- ``gaussian_nll(mean, log_var, target) -> (...)``: ½[(y − μ)² e^{−lv} + lv + log 2π] averaged over
  the last two axes (transitions and dimensions): one value per member;
- ``bootstrap_indices(num_points, ensemble_size, generator) -> (K, n)``;
- ``train_ensemble(inputs, targets, member_indices, epochs, batch_size, lr, generator, hidden_size)
  -> (net, epoch_losses)``: member k trains on its rows ``member_indices[k]`` by minibatch Adam;
- ``predict_next_state(net, normalizers, states, actions, members) -> (mean, log_var)``, each (M, S):
  particle m's Gaussian over i' under member ``members[m]``, in raw units;
- ``expected_returns(predict, reward_fn, state, action_sequences, ensemble_size, particles,
  generator, propagation="ts_inf") -> (N,)``: TS∞ (or TS1) trajectory sampling, Ĝ_n = 1/P Σ_p G^{n,p};
- ``pets_action(predict, reward_fn, state, planner, ensemble_size, particles, generator,
  propagation="ts_inf") -> (A,)``: one step of the MPC loop.

These are the checks students see: each runs the student's function on a small example drawn from
a fixed seed and tests a property that any correct solution has (shapes, standardised columns, the
round trip back to raw units, bounds that hold, a model whose returns are known exactly, a
particle that keeps its member). Statistical checks use tolerances of several standard errors.
Nothing here computes the answer for a student's signature: the exact oracles and the catalogue of
typical mistakes are the instructor's (``solutions/hidden_checks/ensembles.py``).

The checks only pass the student's code data (tensors, numbers, a ``torch.Generator``) and
callables (a fake network, a model's ``predict``, a reward function, a planner), and only read what
it returns, so that they work when the student's code runs in another process.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from mbrl_course.grading.checks import call_student as _call
from mbrl_course.grading.checks import expect_finite, expect_shape, expect_tensor, expect_uses_generator, fmt
from mbrl_course.grading.checks import expect_pair as _pair
from mbrl_course.grading.report import GradingError

DTYPE = torch.float64
LOG_2PI = math.log(2 * math.pi)
NORMALIZER_KEYS = ("input_mean", "input_std", "target_mean", "target_std")


# ------------------------------------------------------------------------------ helpers
def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(got: torch.Tensor, want: torch.Tensor, atol: float = 1e-8, rtol: float = 1e-6) -> bool:
    if tuple(got.shape) != tuple(want.shape):
        return False
    got = got.detach().to(DTYPE)
    return bool(torch.isfinite(got).all()) and bool(((got - want).abs() <= atol + rtol * want.abs()).all())


def _worst(got: torch.Tensor, want: torch.Tensor) -> str:
    """Where ``got`` and ``want`` differ most: `` at index (..) you have x, expected y``."""
    diff = (got.detach().to(DTYPE) - want).abs()
    diff = torch.where(torch.isfinite(diff), diff, torch.full_like(diff, math.inf))
    index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.dim() else ()
    where = f" at index {index}" if index else ""
    return f"{where} you have {float(got[index]):.6g}, expected {float(want[index]):.6g}"


def check_uses_generator(name: str, draw: Callable[[torch.Generator], Any], seed: int = 0) -> None:
    """Same seed -> same result, other seed -> another result: all randomness comes from ``generator``."""
    expect_uses_generator(name, draw, seed, atol=1e-6, example="torch.randint")



# ------------------------------------------------------------------------------ D_real and normalisation
def random_transitions(seed: int, num_points: int = 30, state_dim: int = 3, action_dim: int = 2
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """D_real as (states i (n, S), actions u (n, A), next_states i' (n, S)), float64, with a different
    offset and scale in every dimension (so that normalising matters), i' ≠ i + const."""
    gen = _generator(60_000 + seed)
    offsets = 3 * torch.randn(state_dim + action_dim, generator=gen, dtype=DTYPE)
    scales = torch.exp(1.5 * torch.randn(state_dim + action_dim, generator=gen, dtype=DTYPE))
    raw = offsets + scales * torch.randn(num_points, state_dim + action_dim, generator=gen, dtype=DTYPE)
    states, actions = raw[:, :state_dim], raw[:, state_dim:]
    mixing = 0.3 * torch.randn(state_dim + action_dim, state_dim, generator=gen, dtype=DTYPE)
    change = torch.tanh(raw / scales) @ mixing + 0.5 * torch.randn(state_dim, generator=gen, dtype=DTYPE)
    next_states = states + change + 0.05 * torch.randn(num_points, state_dim, generator=gen, dtype=DTYPE)
    return states, actions, next_states


def _prepare(fn: Callable, states, actions, next_states):
    """Call prepare_training_data; check the types and shapes of (inputs, targets, normalizers)."""
    name = "prepare_training_data"
    result = _call(name, fn, states, actions, next_states)
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise GradingError(f"{name} returned a {type(result).__name__}; expected (inputs, targets, normalizers).")
    inputs, targets, normalizers = result
    n, S, A = states.shape[0], states.shape[1], actions.shape[1]
    expect_shape(f"{name} (inputs)", inputs, (n, S + A), "(n, S + A): one row [i, u] per transition")
    expect_shape(f"{name} (targets)", targets, (n, S), "(n, S): one state change Δi per transition")
    if not isinstance(normalizers, dict):
        raise GradingError(f"{name}: normalizers is a {type(normalizers).__name__}; expected a dict with the keys "
                           f"{', '.join(NORMALIZER_KEYS)}.")
    missing = [key for key in NORMALIZER_KEYS if key not in normalizers]
    if missing:
        raise GradingError(f"{name}: normalizers has no {', '.join(missing)}; expected the keys "
                           f"{', '.join(NORMALIZER_KEYS)}.")
    sizes = {"input_mean": S + A, "input_std": S + A, "target_mean": S, "target_std": S}
    stats = {key: expect_shape(f"{name} (normalizers[{key!r}])", normalizers[key], (sizes[key],),
                               "one value per dimension").detach().to(DTYPE) for key in NORMALIZER_KEYS}
    return inputs.detach().to(DTYPE), targets.detach().to(DTYPE), stats


def check_prepare_shapes(prepare_training_data: Callable, seed: int = 0) -> None:
    """inputs (n, S + A), targets (n, S) and the four statistics, one value per dimension."""
    _prepare(prepare_training_data, *random_transitions(seed, num_points=20, state_dim=3, action_dim=2))


def check_prepare_round_trip(prepare_training_data: Callable, seed: int = 0) -> None:
    """Un-normalised with the statistics returned, the inputs are [i, u] and the targets are Δi = i' − i."""
    name = "prepare_training_data"
    states, actions, next_states = random_transitions(seed, num_points=25, state_dim=2, action_dim=1)
    inputs, targets, stats = _prepare(prepare_training_data, states, actions, next_states)
    for key in NORMALIZER_KEYS:
        expect_finite(f"{name} (normalizers[{key!r}])", stats[key])
    raw_inputs = inputs * stats["input_std"] + stats["input_mean"]
    raw_targets = targets * stats["target_std"] + stats["target_mean"]
    want_inputs = torch.cat([states, actions], dim=-1)
    if not _close(raw_inputs, want_inputs, atol=1e-6, rtol=1e-6):
        hint = ""
        if _close(raw_inputs, torch.cat([actions, states], dim=-1), atol=1e-6, rtol=1e-6):
            hint = " Your columns are [u, i]; the network's input is [i, u] (states first)."
        raise GradingError(
            f"{name}: inputs · input_std + input_mean should give back [i, u], but{_worst(raw_inputs, want_inputs)}."
            f"{hint} Normalise with x̃ = (x − m_x) / s_x, using the statistics you return."
        )
    if _close(raw_targets, next_states, atol=1e-6, rtol=1e-6):
        raise GradingError(
            f"{name}: your targets are the next states i'. PETS' network predicts the change of the state, "
            "Δi = i' − i (an easier target: most of i' is i itself); compute the targets and their statistics "
            "from next_states − states."
        )
    if not _close(raw_targets, next_states - states, atol=1e-6, rtol=1e-6):
        raise GradingError(
            f"{name}: targets · target_std + target_mean should give back Δi = i' − i, but"
            f"{_worst(raw_targets, next_states - states)}. Normalise with ỹ = (Δi − m_y) / s_y, using the "
            "statistics you return."
        )


def check_prepare_standardised(prepare_training_data: Callable, seed: int = 0) -> None:
    """Every column of the inputs and of the targets has mean 0 and standard deviation 1 (1/n, not 1/(n − 1))."""
    name = "prepare_training_data"
    states, actions, next_states = random_transitions(seed, num_points=12, state_dim=3, action_dim=2)
    n = states.shape[0]
    inputs, targets, _ = _prepare(prepare_training_data, states, actions, next_states)
    for label, values in (("inputs", inputs), ("targets", targets)):
        expect_finite(f"{name} ({label})", values)
        std, mean = torch.std_mean(values, dim=0, correction=0)
        if float(mean.abs().max()) > 1e-6:
            j = int(mean.abs().argmax())
            raise GradingError(
                f"{name}: column {j} of the normalised {label} has mean {fmt(mean[j])}, expected 0. Subtract the "
                "mean over the n transitions (dim=0) of each dimension."
            )
        if float((std - 1).abs().max()) > 1e-6:
            j = int((std - 1).abs().argmax())
            hint = ""
            if abs(float(std[j]) - math.sqrt((n - 1) / n)) < 1e-6:
                hint = (" Your standard deviation divides by n − 1 (torch.std's default, the unbiased estimate); "
                        "the normaliser uses s = sqrt(1/n Σ_n (x_n − m)²): std(dim=0, correction=0).")
            elif float((std - std[j]).abs().max()) > 1e-3:
                hint = " Divide each dimension by its own standard deviation (over the transitions, dim=0)."
            raise GradingError(
                f"{name}: column {j} of the normalised {label} has standard deviation {fmt(std[j])} (1/n), "
                f"expected 1.{hint}"
            )


def check_prepare_constant_dimension(prepare_training_data: Callable, seed: int = 0) -> None:
    """A dimension that never changes in D_real (std 0) gives finite, zero normalised values, not NaN."""
    name = "prepare_training_data"
    states, actions, next_states = random_transitions(seed, num_points=16, state_dim=3, action_dim=2)
    states[:, 1] = 0.7  # a state dimension that never changes: constant input, zero change
    next_states[:, 1] = 0.7
    actions[:, 0] = -2.0  # an action that is always the same
    inputs, targets, stats = _prepare(prepare_training_data, states, actions, next_states)
    constant = {"inputs": (inputs, (1, 3), "input_std"), "targets": (targets, (1,), "target_std")}
    for label, (values, columns, key) in constant.items():
        if not bool(torch.isfinite(values).all()) or not bool(torch.isfinite(stats[key]).all()):
            raise GradingError(
                f"{name}: in this D_real state dimension 1 and action dimension 0 never change (standard deviation "
                f"0), and your normalised {label} contain NaN or inf: x̃ = (x − m) / s divides by s = 0. Guard it: "
                "where s_j < 1e-6, use s_j = 1."
            )
        for j in columns:
            if float(stats[key][j]) <= 0:
                raise GradingError(f"{name}: {key}[{j}] = {fmt(stats[key][j])}; a standard deviation to divide by "
                                   "must be positive (use s_j = 1 where s_j < 1e-6).")
            if float(values[:, j].abs().max()) > 1e-6:
                raise GradingError(
                    f"{name}: column {j} of the {label} never changes in D_real, so its normalised values should "
                    f"all be 0 (x − m = 0); you have values up to {fmt(values[:, j].abs().max())}."
                )


# ------------------------------------------------------------------------------ bounded log-variance
BOUND_EXAMPLE_LOG_VAR = (-30.0, -12.0, -10.0, -5.0, 0.0, 0.5, 2.0, 30.0)
"""lv of the worked example, with max_logvar = 0.5 and min_logvar = -10 ..."""
BOUND_EXAMPLE_RESULT = (-10.0, -9.873072, -9.306867, -4.997336, -0.474004, -0.193092, 0.29862, 0.500028)
"""... and the soft-bounded values PETS computes from them (6 decimals)."""


def _bound(fn: Callable, log_var, max_logvar, min_logvar) -> torch.Tensor:
    result = _call("bound_log_variance", fn, log_var, max_logvar, min_logvar)
    result = expect_shape("bound_log_variance", result, tuple(log_var.shape), "the shape of log_var")
    expect_finite("bound_log_variance", result)
    return result


def check_bound_values(bound_log_variance: Callable) -> None:
    """The worked example: lv from -30 to 30 with max_logvar = 0.5, min_logvar = -10."""
    log_var = torch.tensor(BOUND_EXAMPLE_LOG_VAR, dtype=DTYPE)
    want = torch.tensor(BOUND_EXAMPLE_RESULT, dtype=DTYPE)
    got = _bound(bound_log_variance, log_var, torch.tensor(0.5, dtype=DTYPE), torch.tensor(-10.0, dtype=DTYPE))
    if not _close(got, want, atol=2e-6, rtol=0):
        raise GradingError(
            f"bound_log_variance: for lv = {list(BOUND_EXAMPLE_LOG_VAR)}, max_logvar = 0.5, min_logvar = -10 expected "
            f"{list(BOUND_EXAMPLE_RESULT)};{_worst(got, want)}. First lv := max − softplus(max − lv), then "
            "lv := min + softplus(lv − min) (torch.nn.functional.softplus)."
        )


def _bound_problem(seed: int):
    gen = _generator(70_000 + seed)
    K, B, D = 3, 40, 2
    log_var = torch.sort(120 * torch.rand(K, B, D, generator=gen, dtype=DTYPE) - 60, dim=1).values
    max_logvar = torch.rand(K, 1, D, generator=gen, dtype=DTYPE)
    min_logvar = -12 + 4 * torch.rand(K, 1, D, generator=gen, dtype=DTYPE)
    return log_var, max_logvar, min_logvar


def check_bound_limits(bound_log_variance: Callable, seed: int = 0) -> None:
    """The result stays within [min_logvar, max_logvar], is ≈ lv well inside, and grows with lv (bounds (K, 1, D))."""
    name = "bound_log_variance"
    log_var, max_logvar, min_logvar = _bound_problem(seed)
    got = _bound(bound_log_variance, log_var, max_logvar, min_logvar).detach().to(DTYPE)
    slack = 1e-3  # the soft upper bound may overshoot max_logvar by log(1 + e^-(max - min)) < 1e-3 here
    above, below = got > max_logvar + slack, got < min_logvar - 1e-9
    if bool(above.any()) or bool(below.any()):
        side = "above max_logvar" if bool(above.any()) else "below min_logvar"
        raise GradingError(
            f"{name}: {int(above.sum() + below.sum())} of {got.numel()} results lie {side} (lv ranged over "
            "[-60, 60]). The log-variance must stay within the bounds: bound it softly from above with max_logvar, "
            "then from below with min_logvar. Bounds of shape (K, 1, D) broadcast over the batch."
        )
    inside = (log_var < max_logvar - 10) & (log_var > min_logvar + 10)
    if bool(inside.any()) and float((got - log_var)[inside].abs().max()) > 1e-3:
        raise GradingError(
            f"{name}: well inside the bounds the log-variance should stay almost unchanged; it moved by up to "
            f"{float((got - log_var)[inside].abs().max()):.3g}."
        )
    if bool((got.diff(dim=1) < -1e-12).any()):
        raise GradingError(f"{name}: a larger lv gave a smaller result; the soft bounds keep the order of the values.")


def check_bound_gradients(bound_log_variance: Callable, seed: int = 0) -> None:
    """Gradients reach lv everywhere (soft bounds never cut them off) and both bounds (which are learned)."""
    name = "bound_log_variance"
    log_var, max_logvar, min_logvar = _bound_problem(seed)
    log_var = log_var.clamp(-35, 25).requires_grad_(True)
    max_logvar, min_logvar = max_logvar.requires_grad_(True), min_logvar.requires_grad_(True)
    got = _bound(bound_log_variance, log_var, max_logvar, min_logvar)
    if not got.requires_grad:
        raise GradingError(f"{name}: the result carries no gradient; use torch operations (softplus) on the tensors "
                           "you are given, without .detach() or .item().")
    got.sum().backward()
    for label, tensor in (("log_var", log_var), ("max_logvar", max_logvar), ("min_logvar", min_logvar)):
        if tensor.grad is None or not bool(torch.isfinite(tensor.grad).all()):
            raise GradingError(f"{name}: no finite gradient reaches {label}; the bounds are parameters that PETS "
                               "learns, so they must be part of the computation.")
    if bool((log_var.grad <= 0).any()):
        raise GradingError(
            f"{name}: the gradient with respect to lv is 0 for {int((log_var.grad <= 0).sum())} entries beyond a "
            "bound: a hard clamp (torch.clamp) cuts the gradient off there. PETS bounds softly with softplus, so "
            "the gradient gets small but never vanishes."
        )
    if float(max_logvar.grad.abs().sum()) == 0 or float(min_logvar.grad.abs().sum()) == 0:
        raise GradingError(f"{name}: the result does not depend on one of the bounds; use both max_logvar and "
                           "min_logvar.")


# ------------------------------------------------------------------------------ Gaussian NLL
NLL_EXAMPLE = {
    "mean": (((0.0, 1.0), (2.0, -1.0)), ((0.5, 0.5), (0.0, 0.0))),
    "log_var": (((0.0, 0.0), (1.0, -1.0)), ((-2.0, 0.5), (2.0, 0.0))),
    "target": (((0.0, 0.0), (1.0, 1.0)), ((0.0, 1.0), (3.0, -1.0))),
}
"""A worked example with K = 2 members, B = 2 transitions, D = 2 dimensions ..."""
NLL_EXAMPLE_RESULT = (2.4490643775806253, 1.5085528130534644)
"""... and its per-member NLL."""


def _nll(fn: Callable, mean, log_var, target) -> torch.Tensor:
    result = _call("gaussian_nll", fn, mean, log_var, target)
    want = tuple(mean.shape[:-2])
    result = expect_shape("gaussian_nll", result, want,
                          "one value per member: the mean over the last two axes (transitions and dimensions)")
    if not bool(torch.isfinite(result).all()):
        raise GradingError(
            "gaussian_nll returned NaN or inf for log-variances of a few units, some 0 or negative. log_var is the logarithm of the "
            "variance: it may be 0 or negative, and the variance is e^lv (divide by e^lv, i.e. multiply by e^{−lv}; "
            "never divide by log_var or take its log)."
        )
    return result


def check_nll_shape(gaussian_nll: Callable) -> None:
    """(K, B, D) -> (K,), one value per member; (B, D) -> a scalar."""
    gen = _generator(80_000)
    for shape in ((4, 6, 3), (5, 2)):
        mean, log_var, target = (torch.randn(shape, generator=gen, dtype=DTYPE) for _ in range(3))
        _nll(gaussian_nll, mean, log_var, target)


def check_nll_values(gaussian_nll: Callable) -> None:
    """The worked example, and ½ log 2π per entry where μ = y and lv = 0."""
    mean, log_var, target = (torch.tensor(NLL_EXAMPLE[key], dtype=DTYPE) for key in ("mean", "log_var", "target"))
    got = _nll(gaussian_nll, mean, log_var, target)
    perfect = _nll(gaussian_nll, target, torch.zeros_like(target), target)
    if not _close(perfect, torch.full_like(perfect, 0.5 * LOG_2PI)):
        raise GradingError(
            f"gaussian_nll: where the mean is exactly the target and lv = 0 (variance 1) every entry has "
            f"−log N(y | y, 1) = ½ log 2π = {0.5 * LOG_2PI:.6f}; you return {fmt(perfect)}. "
            "−log N(y | μ, e^lv) = ½ [(y − μ)² e^{−lv} + lv + log 2π]."
        )
    want = torch.tensor(NLL_EXAMPLE_RESULT, dtype=DTYPE)
    if not _close(got, want):
        raise GradingError(
            f"gaussian_nll: on the worked example (K = 2, B = 2, D = 2) expected {list(NLL_EXAMPLE_RESULT)}; you have "
            f"{[round(float(v), 6) for v in got]}. Per entry ½ [(y − μ)² e^{{−lv}} + lv + log 2π], then the mean over "
            "the transitions and dimensions (the last two axes) of each member."
        )


# ------------------------------------------------------------------------------ bootstrap
def _indices(fn: Callable, num_points: int, ensemble_size: int, generator: torch.Generator) -> torch.Tensor:
    name = "bootstrap_indices"
    result = _call(name, fn, num_points, ensemble_size, generator)
    result = expect_shape(name, result, (ensemble_size, num_points),
                          "(ensemble_size, num_points): n indices for each member")
    if result.dtype not in (torch.int64, torch.int32):
        raise GradingError(f"{name} returned dtype {result.dtype}; indices are integers (torch.long), e.g. from "
                           "torch.randint.")
    if int(result.min()) < 0 or int(result.max()) >= num_points:
        raise GradingError(f"{name}: indices range over [{int(result.min())}, {int(result.max())}]; expected rows "
                           f"of D_real, 0 .. num_points − 1 = {num_points - 1}.")
    return result


def check_bootstrap_shape(bootstrap_indices: Callable, seed: int = 0) -> None:
    """(ensemble_size, num_points) integer indices into D_real, in [0, num_points)."""
    _indices(bootstrap_indices, 40, 5, _generator(seed))


def check_bootstrap_resamples(bootstrap_indices: Callable, seed: int = 0) -> None:
    """Each member's row is drawn with replacement (about 63 % distinct indices), and the members' rows differ."""
    name = "bootstrap_indices"
    n, K = 200, 4
    rows = _indices(bootstrap_indices, n, K, _generator(seed))
    distinct = torch.tensor([float(torch.unique(row).numel()) / n for row in rows], dtype=DTYPE)
    expected = 1 - (1 - 1 / n) ** n  # 0.634: a bootstrap misses about 1/e of the points
    for k, fraction in enumerate(distinct.tolist()):
        if fraction > 0.999:
            raise GradingError(
                f"{name}: member {k}'s {n} indices are all different: that is a permutation (drawn without "
                "replacement), which trains the member on D_real itself. A bootstrap resample draws n indices WITH "
                "replacement (torch.randint): some points come twice or more, about 37 % not at all."
            )
        if abs(fraction - expected) > 0.1:
            raise GradingError(
                f"{name}: member {k}'s resample holds {fraction:.0%} distinct points; n draws with replacement from n "
                f"points hold about {expected:.0%}. Draw every index uniformly from 0 .. num_points − 1."
            )
    for a in range(K):
        for b in range(a):
            if torch.equal(rows[a], rows[b]):
                raise GradingError(
                    f"{name}: members {b} and {a} got the same resample. Each member draws its own: that is what "
                    "makes the members disagree where data are scarce."
                )


# ------------------------------------------------------------------------------ training
def member_data(seed: int, num_members: int = 2, rows_per_member: int = 24):
    """Normalised inputs (n, 1) and targets (n, 1) made of ``num_members`` clusters with targets near
    c_k = +1, -1 (, 0), and member_indices (K, rows) giving member k resampled rows of cluster k only."""
    gen = _generator(90_000 + seed)
    centres = torch.tensor([1.0, -1.0, 0.0, 2.0][:num_members])
    inputs = 3 * torch.rand(num_members * rows_per_member, 1, generator=gen) - 1.5
    targets = centres.repeat_interleave(rows_per_member)[:, None] + 0.05 * torch.randn(
        num_members * rows_per_member, 1, generator=gen)
    offsets = (torch.arange(num_members) * rows_per_member)[:, None]
    member_indices = offsets + torch.randint(0, rows_per_member, (num_members, rows_per_member), generator=gen)
    return inputs, targets, member_indices, centres


def _train(fn: Callable, inputs, targets, member_indices, epochs, batch_size, lr, seed, hidden_size=32):
    name = "train_ensemble"
    result = _call(name, fn, inputs, targets, member_indices, epochs, batch_size, lr, _generator(seed),
                   hidden_size=hidden_size)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise GradingError(f"{name} returned a {type(result).__name__}; expected (net, epoch_losses).")
    net, losses = result
    if not callable(net):
        raise GradingError(f"{name}: the first thing returned is a {type(net).__name__}; expected the trained "
                           "EnsembleMLP.")
    try:
        losses = [float(v) for v in losses]
    except (TypeError, ValueError):
        raise GradingError(f"{name}: epoch_losses should be a list of numbers, one per epoch; got "
                           f"{type(losses).__name__}.") from None
    if len(losses) != epochs:
        raise GradingError(f"{name} returned {len(losses)} epoch losses for epochs = {epochs}; expected one per epoch.")
    if not all(math.isfinite(v) for v in losses):
        raise GradingError(f"{name}: the training loss became NaN or inf ({losses[-3:]} at the end).")
    return net, losses


def _net_outputs(net: Callable, x: torch.Tensor, out_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The trained network's (μ̃, lṽ) for per-member inputs x (K, B, in), without gradients."""
    with torch.no_grad():
        mean, log_var = _pair("the trained net", net(x), "mean", "log_var")
    K, B = x.shape[0], x.shape[1]
    expect_shape("the trained net (mean)", mean, (K, B, out_dim), "(K, B, D)")
    expect_shape("the trained net (log_var)", log_var, (K, B, out_dim), "(K, B, D)")
    expect_finite("the trained net", mean)
    return mean.detach().to(DTYPE), log_var.detach().to(DTYPE)


def check_train_returns(train_ensemble: Callable, seed: int = 0) -> None:
    """Returns (net, epoch_losses): one finite loss per epoch, and a net mapping (K, B, in) to (μ̃, lṽ) of (K, B, D)."""
    gen = _generator(95_000 + seed)
    inputs = torch.randn(40, 2, generator=gen)
    targets = torch.sin(inputs[:, :1]) + 0.1 * torch.randn(40, 1, generator=gen)
    member_indices = torch.randint(0, 40, (2, 40), generator=gen)
    net, _ = _train(train_ensemble, inputs, targets, member_indices, epochs=3, batch_size=10, lr=1e-2, seed=seed)
    _net_outputs(net, inputs[:7].expand(2, -1, -1), 1)


def check_train_members_own_data(train_ensemble: Callable, seed: int = 0, num_members: int = 2) -> None:
    """Member k learns from its own rows only: given the rows of a cluster with targets near c_k, it predicts ≈ c_k,
    and the loss goes down."""
    name = "train_ensemble"
    inputs, targets, member_indices, centres = member_data(seed, num_members)
    net, losses = _train(train_ensemble, inputs, targets, member_indices, epochs=50, batch_size=12, lr=1e-2,
                         seed=seed)
    if not losses[-1] < losses[0]:
        raise GradingError(f"{name}: the loss did not go down ({losses[0]:.4g} in the first epoch, {losses[-1]:.4g} in "
                           "the last). Take an Adam step on every minibatch: zero_grad, backward, step.")
    grid = torch.linspace(-1, 1, 9)[:, None]
    mean, _ = _net_outputs(net, grid.expand(num_members, -1, -1), 1)
    predicted = mean.mean(dim=(1, 2))  # each member's average prediction over the inputs
    if float((predicted - centres.to(DTYPE)).abs().max()) < 0.3:
        return
    if float(predicted.max() - predicted.min()) < 0.3:
        raise GradingError(
            f"{name}: member k was given only the rows member_indices[k] (here one cluster each, with targets near "
            f"{[float(c) for c in centres]}), but all members predict about the same ({fmt(predicted)}): they were "
            "trained on the same data. Member k's minibatches must come from inputs[member_indices[k]] and "
            "targets[member_indices[k]]: that is the bootstrap."
        )
    raise GradingError(
        f"{name}: member k was given only rows of a cluster with targets near {[float(c) for c in centres]}; after "
        f"training the members predict {fmt(predicted)}. Train member k on its own rows member_indices[k] with the "
        "Gaussian NLL."
    )


# ------------------------------------------------------------------------------ prediction
class FakeNet:
    """A stand-in for the trained network: ``net(x̃ (M, S + A), members (M,)) -> (μ̃ (M, S), lṽ (M, S))``.

    μ̃ = tanh(x̃ W_k) + c_k and lṽ = a_k + 0.3 tanh(x̃ V_k) for member k = members[m] (``zero=True``:
    μ̃ = lṽ = 0). Records the inputs and members it was called with.
    """

    def __init__(self, seed: int, state_dim: int, action_dim: int, ensemble_size: int, zero: bool = False) -> None:
        gen = _generator(100_000 + seed)
        self.state_dim, self.in_dim, self.ensemble_size, self.zero = state_dim, state_dim + action_dim, ensemble_size, zero
        K, D, S = ensemble_size, self.in_dim, state_dim
        self.W = torch.randn(K, D, S, generator=gen, dtype=DTYPE)
        self.c = torch.randn(K, S, generator=gen, dtype=DTYPE)
        self.V = torch.randn(K, D, S, generator=gen, dtype=DTYPE)
        self.a = -1 + torch.randn(K, S, generator=gen, dtype=DTYPE)
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, inputs, members=None):
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2 or inputs.shape[-1] != self.in_dim:
            raise GradingError(
                f"the network was called with {_describe(inputs)}; it takes the normalised inputs x̃ of shape "
                f"(M, S + A) = (M, {self.in_dim}) and the members (M,)."
            )
        if not isinstance(members, torch.Tensor) or tuple(members.shape) != (inputs.shape[0],) or members.dtype not in (
                torch.int64, torch.int32):
            raise GradingError(
                f"the network was called with members = {_describe(members)}; pass the member index of every row, "
                f"an integer tensor of shape (M,) = ({inputs.shape[0]},): net(inputs, members)."
            )
        if int(members.min()) < 0 or int(members.max()) >= self.ensemble_size:
            raise GradingError(f"the network was called with member indices outside 0 .. {self.ensemble_size - 1}.")
        x = inputs.detach().to(DTYPE)
        self.calls.append((x.clone(), members.detach().clone()))
        if self.zero:
            zeros = torch.zeros(x.shape[0], self.state_dim, dtype=inputs.dtype)
            return zeros, zeros.clone()
        k = members.long()
        mean = torch.tanh(torch.einsum("md,mds->ms", x, self.W[k])) + self.c[k]
        log_var = self.a[k] + 0.3 * torch.tanh(torch.einsum("md,mds->ms", x, self.V[k]))
        return mean.to(inputs.dtype), log_var.to(inputs.dtype)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"a {type(value).__name__}"


def random_normalizers(seed: int, state_dim: int, action_dim: int) -> dict[str, torch.Tensor]:
    """Statistics {input_mean, input_std, target_mean, target_std} far from 0 and 1, float64."""
    gen = _generator(110_000 + seed)
    D = state_dim + action_dim
    return {
        "input_mean": 2 * torch.randn(D, generator=gen, dtype=DTYPE),
        "input_std": torch.exp(torch.randn(D, generator=gen, dtype=DTYPE)),
        "target_mean": 0.5 * torch.randn(state_dim, generator=gen, dtype=DTYPE),
        "target_std": 0.1 * torch.exp(torch.randn(state_dim, generator=gen, dtype=DTYPE)),
    }


def _predict(fn: Callable, net, normalizers, states, actions, members) -> tuple[torch.Tensor, torch.Tensor]:
    name = "predict_next_state"
    result = _call(name, fn, net, {k: v.clone() for k, v in normalizers.items()}, states, actions, members)
    mean, log_var = _pair(name, result, "mean", "log_var")
    M, S = states.shape
    expect_shape(f"{name} (mean)", mean, (M, S), "(M, S): one Gaussian over i' per row")
    expect_shape(f"{name} (log_var)", log_var, (M, S), "(M, S)")
    expect_finite(f"{name} (mean)", mean)
    expect_finite(f"{name} (log_var)", log_var)
    return mean.detach().to(DTYPE), log_var.detach().to(DTYPE)


def _rows(seed: int, normalizers, num_rows: int, state_dim: int, action_dim: int, ensemble_size: int):
    gen = _generator(120_000 + seed)
    x = normalizers["input_mean"] + normalizers["input_std"] * torch.randn(num_rows, state_dim + action_dim,
                                                                           generator=gen, dtype=DTYPE)
    members = torch.randint(0, ensemble_size, (num_rows,), generator=gen)
    return x[:, :state_dim], x[:, state_dim:], members


def check_predict_shapes(predict_next_state: Callable, seed: int = 0) -> None:
    """mean and log_var of shape (M, S), finite, and the network is asked once for the M rows with their members."""
    S, A, K, M = 3, 2, 4, 10
    net = FakeNet(seed, S, A, K)
    normalizers = random_normalizers(seed, S, A)
    states, actions, members = _rows(seed, normalizers, M, S, A, K)
    _predict(predict_next_state, net, normalizers, states, actions, members)
    if not net.calls:
        raise GradingError("predict_next_state never called the network: net(inputs, members) gives μ̃, lṽ.")
    if not torch.equal(net.calls[-1][1], members):
        raise GradingError("predict_next_state: the network got other members than the ones you were given; pass "
                           "`members` on unchanged (row m uses member members[m]).")


def check_predict_zero_network(predict_next_state: Callable, seed: int = 0) -> None:
    """A network that predicts μ̃ = 0, lṽ = 0 (the data's average change) gives mean i + m_y and log-variance 2 log s_y."""
    name = "predict_next_state"
    S, A, K, M = 2, 1, 3, 6
    net = FakeNet(seed, S, A, K, zero=True)
    normalizers = random_normalizers(seed, S, A)
    states, actions, members = _rows(seed, normalizers, M, S, A, K)
    mean, log_var = _predict(predict_next_state, net, normalizers, states, actions, members)
    m_y, s_y = normalizers["target_mean"], normalizers["target_std"]
    want_mean = states + m_y
    if not _close(mean, want_mean):
        if _close(mean, m_y.expand(M, S)):
            hint = (" You return the change Δi; the network predicts Δi = i' − i, so the next state's mean is "
                    "i + Δi: add the state.")
        elif _close(mean, states):
            hint = (" You return i + μ̃ with μ̃ still normalised; un-normalise it first: Δi = m_y + s_y μ̃.")
        else:
            hint = " mean = i + m_y + s_y μ̃."
        raise GradingError(f"{name}: with a network that predicts μ̃ = 0 (the average change), the mean should be "
                           f"i + target_mean;{_worst(mean, want_mean)}.{hint}")
    want_log_var = (2 * torch.log(s_y)).expand(M, S)
    if not _close(log_var, want_log_var):
        if _close(log_var, torch.zeros_like(log_var)):
            hint = " You return lṽ in normalised units; Δi = m_y + s_y ỹ has variance s_y² e^lṽ."
        elif _close(log_var, torch.log(s_y).expand(M, S)):
            hint = " A variance scales with the square of s_y: add 2 log s_y, not log s_y."
        elif _close(log_var, s_y.square().expand(M, S)):
            hint = " You return the variance s_y² e^lṽ; return its logarithm, lṽ + 2 log s_y."
        else:
            hint = " log σ² = lṽ + 2 log s_y."
        raise GradingError(f"{name}: with a network that predicts lṽ = 0 (variance 1 in normalised units), the "
                           f"log-variance in raw units should be 2 log target_std;{_worst(log_var, want_log_var)}.{hint}")


def check_predict_normalises_inputs(predict_next_state: Callable, seed: int = 0) -> None:
    """The network sees x̃ = ([i, u] − m_x) / s_x: 0 at the input mean, 1 one standard deviation above it."""
    name = "predict_next_state"
    S, A, K = 3, 1, 2
    net = FakeNet(seed, S, A, K)
    normalizers = random_normalizers(seed, S, A)
    m_x, s_x = normalizers["input_mean"], normalizers["input_std"]
    x = torch.stack([m_x, m_x + s_x, m_x - 2 * s_x])
    _predict(predict_next_state, net, normalizers, x[:, :S], x[:, S:], torch.tensor([0, 1, 1]))
    if not net.calls:
        raise GradingError(f"{name} never called the network.")
    seen = net.calls[-1][0]
    want = torch.tensor([[0.0] * (S + A), [1.0] * (S + A), [-2.0] * (S + A)], dtype=DTYPE)
    if _close(seen, want, atol=1e-6):
        return
    if _close(seen, x, atol=1e-6):
        raise GradingError(
            f"{name}: the network got the raw inputs [i, u]. It was trained on normalised inputs, so at prediction "
            "time it must see them normalised the same way: x̃ = ([i, u] − input_mean) / input_std (normalising in "
            "training only is a classic bug: the model then sees inputs it never saw in training)."
        )
    raise GradingError(
        f"{name}: for [i, u] = input_mean the network should see x̃ = 0, for input_mean + input_std x̃ = 1, for "
        f"input_mean − 2·input_std x̃ = −2; it saw {fmt(seen[:, 0])} in its first column. "
        "x̃ = ([i, u] − input_mean) / input_std."
    )


# ------------------------------------------------------------------------------ trajectory sampling
class DriftModel:
    """A known model to plan in: member k predicts i' ~ N(i + B u + b_k, diag exp(log_var_k)).

    ``predict(states (M, S), actions (M, A), members (M,)) -> (mean (M, S), log_var (M, S))``, as the
    student's ``predict`` built from a trained ensemble. Records every call (states, actions, members).
    """

    def __init__(self, drifts: torch.Tensor, log_var: torch.Tensor | float, action_matrix: torch.Tensor | None = None
                 ) -> None:
        self.drifts = drifts.to(DTYPE)  # b_k: (K, S)
        self.ensemble_size, self.state_dim = self.drifts.shape
        self.log_var = torch.as_tensor(log_var, dtype=DTYPE).expand(self.ensemble_size, self.state_dim)
        self.action_matrix = action_matrix
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def __call__(self, states, actions, members):
        S = self.state_dim
        if not isinstance(states, torch.Tensor) or states.dim() != 2 or states.shape[1] != S:
            raise GradingError(f"predict was called with states = {_describe(states)}; it takes the particles' states "
                               f"(M, S) = (M, {S}).")
        M = states.shape[0]
        if not isinstance(actions, torch.Tensor) or actions.dim() != 2 or actions.shape[0] != M:
            raise GradingError(f"predict was called with actions = {_describe(actions)}; it takes one action per "
                               f"particle, (M, A) with M = {M}.")
        if not isinstance(members, torch.Tensor) or tuple(members.shape) != (M,) or members.dtype not in (
                torch.int64, torch.int32):
            raise GradingError(f"predict was called with members = {_describe(members)}; it takes the member of "
                               f"every particle, an integer tensor of shape (M,) = ({M},).")
        if int(members.min()) < 0 or int(members.max()) >= self.ensemble_size:
            raise GradingError(f"predict was called with member indices in [{int(members.min())}, "
                               f"{int(members.max())}]; the ensemble has members 0 .. {self.ensemble_size - 1}.")
        self.calls.append((states.detach().to(DTYPE).clone(), actions.detach().to(DTYPE).clone(),
                           members.detach().clone()))
        k = members.long()
        mean = states.detach().to(DTYPE) + self.drifts[k]
        if self.action_matrix is not None:
            mean = mean + actions.detach().to(DTYPE) @ self.action_matrix.T
        return mean.to(states.dtype), self.log_var[k].to(states.dtype).clone()


def negative_square_reward(state, action, next_state):
    """g(i, u, i') = −|i'|², (M,)."""
    return -(next_state**2).sum(dim=-1)


def _returns(fn: Callable, predict, reward_fn, state, action_sequences, ensemble_size, particles, seed,
             propagation: str | None = None) -> torch.Tensor:
    name = "expected_returns"
    kwargs = {} if propagation is None else {"propagation": propagation}
    result = _call(name, fn, predict, reward_fn, state, action_sequences, ensemble_size, particles, _generator(seed),
                   **kwargs)
    result = expect_shape(name, result, (action_sequences.shape[0],), "(N,): one expected return per sequence")
    expect_finite(name, result)
    return result.detach().to(DTYPE)


def check_returns_calls(expected_returns: Callable, seed: int = 0) -> None:
    """Ĝ has shape (N,); predict is called once per step t = 1..H, for all N·P particles at once, each
    sequence's action u^n_t given to its P particles."""
    name = "expected_returns"
    gen = _generator(130_000 + seed)
    N, H, P, K, S, A = 6, 4, 3, 2, 2, 1
    model = DriftModel(torch.randn(K, S, generator=gen, dtype=DTYPE), -3.0,
                       torch.randn(S, A, generator=gen, dtype=DTYPE))
    actions = torch.randn(N, H, A, generator=gen, dtype=DTYPE)
    _returns(expected_returns, model, negative_square_reward, torch.zeros(S, dtype=DTYPE), actions, K, P, seed)
    if len(model.calls) != H:
        raise GradingError(
            f"{name} called predict {len(model.calls)} times for a horizon H = {H}; expected one call per step, with "
            "all N·P particles in one batch (no loop over sequences or particles)."
        )
    for t, (states, acts, _) in enumerate(model.calls):
        if states.shape[0] != N * P:
            raise GradingError(f"{name}: step {t + 1} asked predict about {states.shape[0]} particles; expected "
                               f"N·P = {N}·{P} = {N * P}, every particle of every sequence at once.")
        for n in range(N):
            count = int((acts - actions[n, t]).abs().amax(dim=1).lt(1e-9).sum())
            if count != P:
                raise GradingError(
                    f"{name}: at step {t + 1}, {count} particles got sequence {n}'s action u^{n}_{t + 1}; each of its "
                    f"P = {P} particles must (repeat_interleave the action sequences P times)."
                )


def check_returns_ts_inf_exact(expected_returns: Callable, seed: int = 0) -> None:
    """Two members drifting by +1 and −1 per step, no noise, g = −i'²: under TS∞ every particle earns exactly
    −Σ_{t=1}^{H} t², whichever member it keeps, so Ĝ_n = −Σ t² (TS1 or summed particles would not)."""
    name = "expected_returns"
    N, H, P = 5, 4, 8
    model = DriftModel(torch.tensor([[1.0], [-1.0]]), -40.0)  # σ = e^-20: no noise to speak of
    actions = torch.randn(N, H, 1, generator=_generator(seed), dtype=DTYPE)
    got = _returns(expected_returns, model, negative_square_reward, torch.zeros(1, dtype=DTYPE), actions, 2, P, seed)
    want = -sum(t * t for t in range(1, H + 1))
    if _close(got, torch.full_like(got, want), atol=1e-5):
        return
    if _close(got, torch.full_like(got, P * want), atol=1e-5):
        raise GradingError(
            f"{name}: every sequence returned {P}·({want}) = {P * want}: you summed the returns of the P = {P} "
            "particles. Ĝ_n is their average, 1/P Σ_p G^{n,p} (an estimate of the expected return)."
        )
    raise GradingError(
        f"{name}: the members drift by +1 and −1 per step without noise, so a particle that keeps its member earns "
        f"−(1² + 2² + ... + H²) = {want} and every Ĝ_n should be {want}; you return {fmt(got)}. A different value "
        "means some particle changed its member during the horizon (under TS∞ each particle draws its member once, "
        "before the first step), or the rewards are not g(i_t, u_t, i_{t+1}) summed over t = 1..H."
    )


def check_returns_members_kept(expected_returns: Callable, seed: int = 0) -> None:
    """TS∞: each particle's member is drawn at random, once: the same member at every step, and not the same for all."""
    name = "expected_returns"
    N, H, P, K = 8, 5, 4, 3
    model = DriftModel(torch.tensor([[0.5], [0.0], [-0.5]]), -4.0)
    actions = torch.zeros(N, H, 1, dtype=DTYPE)
    _returns(expected_returns, model, negative_square_reward, torch.zeros(1, dtype=DTYPE), actions, K, P, seed)
    if len(model.calls) != H:
        raise GradingError(f"{name} called predict {len(model.calls)} times for H = {H}; expected once per step.")
    members = torch.stack([call[2] for call in model.calls])  # (H, M)
    changed = (members != members[0]).any(dim=0)
    if bool(changed.any()):
        raise GradingError(
            f"{name}: {int(changed.sum())} of {members.shape[1]} particles used another member at a later step. Under "
            "TS∞ a particle draws its member once, before the first step, and keeps it for the whole horizon "
            "(drawing afresh every step is TS1)."
        )
    if bool((members[0] == members[0, 0]).all()):
        raise GradingError(
            f"{name}: all {members.shape[1]} particles use member {int(members[0, 0])}. Draw each particle's member "
            "uniformly at random from 0 .. ensemble_size − 1 (torch.randint with the generator)."
        )


# ------------------------------------------------------------------------------ MPC step
class SpyPlanner:
    """A planner that records the objective it is given and returns a fixed plan (H, A)."""

    def __init__(self, plan: torch.Tensor) -> None:
        self.plan = plan
        self.objectives: list[Callable] = []

    def __call__(self, objective):
        if not callable(objective):
            raise GradingError(f"pets_action gave the planner a {type(objective).__name__}; give it the objective, a "
                               "function mapping action sequences (N, H, A) to expected returns (N,).")
        self.objectives.append(objective)
        return self.plan.clone()


def check_pets_action_first(pets_action: Callable, seed: int = 0) -> None:
    """pets_action asks the planner once and returns the first action u_1 of its plan, (A,)."""
    name = "pets_action"
    gen = _generator(140_000 + seed)
    plan = torch.randn(5, 2, generator=gen, dtype=DTYPE)
    planner = SpyPlanner(plan)
    model = DriftModel(torch.zeros(2, 3, dtype=DTYPE), -3.0, torch.randn(3, 2, generator=gen, dtype=DTYPE))
    action = _call(name, pets_action, model, negative_square_reward, torch.zeros(3, dtype=DTYPE), planner, 2, 4,
                   _generator(seed))
    if len(planner.objectives) != 1:
        raise GradingError(f"{name} called the planner {len(planner.objectives)} times; expected once: "
                           "plan = planner(objective).")
    action = expect_tensor(name, action)
    if tuple(action.shape) == tuple(plan.shape):
        raise GradingError(f"{name} returned the whole plan {tuple(plan.shape)}; MPC executes only its first action "
                           "plan[0], shape (A,), and plans again at the next state.")
    expect_shape(name, action, (2,), "(A,): the first action of the plan")
    if not _close(action, plan[0]):
        raise GradingError(f"{name}: expected the plan's first action {fmt(plan[0])}, got {fmt(action)}.")


def rollout_return(dynamics: Callable, reward_fn: Callable, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """G_n = Σ_{t=1}^{H} g(i_t, u^n_t, i_{t+1}) of a deterministic ``dynamics(i (1, S), u (1, A)) -> i'``, one
    sequence at a time: (N,)."""
    N, H, _ = actions.shape
    total = torch.zeros(N, dtype=DTYPE)
    for n in range(N):
        current = state[None].to(DTYPE)
        for t in range(H):
            following = dynamics(current, actions[n, t][None])
            total[n] += reward_fn(current, actions[n, t][None], following)[0]
            current = following
    return total


def check_pets_action_objective(pets_action: Callable, seed: int = 0, state_dim: int = 2, action_dim: int = 1) -> None:
    """The objective handed to the planner returns each sequence's return in the model, from the current state
    (one member, no noise: every particle follows the same trajectory)."""
    name = "pets_action"
    gen = _generator(150_000 + seed)
    drift = 0.2 * torch.randn(1, state_dim, generator=gen, dtype=DTYPE)
    B = torch.randn(state_dim, action_dim, generator=gen, dtype=DTYPE)
    model = DriftModel(drift, -40.0, B)
    state = torch.randn(state_dim, generator=gen, dtype=DTYPE)

    def reward_fn(i, u, following):
        return -(following**2).sum(-1) - 0.1 * (u**2).sum(-1) + 0.3 * i[..., 0]

    planner = SpyPlanner(torch.zeros(4, action_dim, dtype=DTYPE))
    _call(name, pets_action, model, reward_fn, state.clone(), planner, 1, 3, _generator(seed))
    if not planner.objectives:
        raise GradingError(f"{name} never called the planner: plan = planner(objective).")
    objective = planner.objectives[0]
    for N, H in ((5, 4), (2, 1)):
        actions = torch.randn(N, H, action_dim, generator=gen, dtype=DTYPE)
        returns = _call(f"the objective from {name}", objective, actions.clone())
        returns = expect_shape(f"the objective from {name}", returns, (N,), "(N,): one return per action sequence")
        want = rollout_return(lambda i, u: i + drift + u @ B.T, reward_fn, state, actions)
        if _close(returns.detach().to(DTYPE), 3 * want, atol=1e-6, rtol=1e-6):
            raise GradingError(
                f"the objective from {name} returns 3 times the returns of the sequences with particles = 3: "
                "expected_returns sums the particles' returns; it averages them."
            )
        if not _close(returns.detach().to(DTYPE), want, atol=1e-6, rtol=1e-6):
            raise GradingError(
                f"the objective from {name} returns {fmt(returns)} for {N} sequences of horizon {H}; expected "
                f"{fmt(want)}, their returns Σ_t g(i_t, u_t, i_{{t+1}}) from the current state (in a model with one "
                "member and no noise). Build the objective from expected_returns with the state you are given."
            )
