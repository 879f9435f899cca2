"""Hidden checks of Assignment 3 (probabilistic ensembles and PETS): the instructor's oracles, the
catalogue of typical mistakes, and the checks that use them. Not installed with the package: the
hidden test regions of ``solutions/03-ensembles-pets`` load this file with
``mbrl_course.grading.instructor.hidden_checks("ensembles")``.

The oracles have the students' own signatures (that is why they live here): exact float64 answers
for ``prepare_training_data``, ``bound_log_variance``, ``gaussian_nll`` and ``predict_next_state``,
and, for trajectory sampling, exact returns of a known model given the members a student's code
drew (read off the calls it made). Where an answer is wrong, a check compares it with the answers
of the mistakes in the catalogue (targets i' instead of Δi, the unbiased std, log-variance treated
as a variance, no normalisation at inference, particles re-dealt to members, returns summed over
particles, ...) and names the one that matches. The visible checks
(:mod:`mbrl_course.grading.ensembles`) are reused here on other inputs.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import threading
from collections.abc import Callable

import torch
from torch.nn import functional as F

from mbrl_course.grading import ensembles as visible
from mbrl_course.grading.checks import expect_finite, expect_independent, expect_shape, fmt
from mbrl_course.grading.report import GradingError

DTYPE = torch.float64
LOG_2PI = math.log(2 * math.pi)
_call, _close, _worst, _generator = visible._call, visible._close, visible._worst, visible._generator


def _match(got: torch.Tensor, want: torch.Tensor, mistakes: dict[str, tuple[torch.Tensor, str]], atol=1e-7,
           rtol=1e-6) -> str | None:
    """The message of the first catalogued mistake whose value ``got`` equals (and the right answer does not)."""
    for wrong, message in mistakes.values():
        if tuple(wrong.shape) == tuple(got.shape) and _close(got, wrong, atol, rtol) and not _close(wrong, want, atol,
                                                                                                       rtol):
            return message
    return None


# ------------------------------------------------------------------------------ prepare_training_data
def _stats(values: torch.Tensor, correction: int = 0, guard: bool = True):
    std = values.std(dim=0, correction=correction)
    if guard:
        std = torch.where(std < 1e-6, torch.ones_like(std), std)
    return values.mean(dim=0), std


def prepare_oracle(states, actions, next_states):
    """(x̃, ỹ, normalizers): x = [i, u], y = i' − i, per-dimension mean and biased std (1 where < 1e-6)."""
    x, y = torch.cat([states, actions], dim=-1), next_states - states
    (m_x, s_x), (m_y, s_y) = _stats(x), _stats(y)
    return (x - m_x) / s_x, (y - m_y) / s_y, {"input_mean": m_x, "input_std": s_x, "target_mean": m_y,
                                               "target_std": s_y}


def prepare_mistakes(states, actions, next_states) -> dict[str, tuple[dict, str]]:
    """name -> (what the mistake returns: inputs, targets and the statistics, the message naming it)."""
    x = torch.cat([states, actions], dim=-1)

    def variant(y, correction=0, divide=lambda s: s, over_all=False):
        if over_all:
            m_x, s_x, m_y, s_y = x.mean(), x.std(correction=0), y.mean(), y.std(correction=0)
            m_x, s_x, m_y, s_y = (v.expand(n) for v, n in ((m_x, x.shape[1]), (s_x, x.shape[1]),
                                                          (m_y, y.shape[1]), (s_y, y.shape[1])))
        else:
            (m_x, s_x), (m_y, s_y) = _stats(x, correction), _stats(y, correction)
        return {"inputs": (x - m_x) / divide(s_x), "targets": (y - m_y) / divide(s_y), "input_mean": m_x,
                "input_std": s_x, "target_mean": m_y, "target_std": s_y}

    change = next_states - states
    return {
        "next_states": (variant(next_states), "your targets are the next states i'. PETS' network predicts the change "
                        "Δi = i' − i: compute the targets (and their mean and std) from next_states − states."),
        "unbiased": (variant(change, correction=1), "your standard deviations divide by n − 1 (torch.std's default, "
                     "the unbiased estimate); the normaliser uses s = sqrt(1/n Σ_n (x_n − m)²): std(dim=0, "
                     "correction=0)."),
        "variance": (variant(change, divide=lambda s: s**2), "you divided by the variance s²; standardising divides "
                     "by the standard deviation s."),
        "over_all": (variant(change, over_all=True), "your mean and std are over all entries of the tensor; each "
                     "dimension gets its own, over the n transitions (dim=0)."),
    }


def check_prepare_exact(prepare_training_data: Callable, seed: int = 0) -> None:
    """inputs, targets and the four statistics equal the exact ones on data sets of several sizes."""
    name = "prepare_training_data"
    for run, (n, S, A) in enumerate(((7, 1, 1), (50, 4, 3))):
        states, actions, next_states = visible.random_transitions(seed + run, n, S, A)
        inputs, targets, stats = visible._prepare(prepare_training_data, states, actions, next_states)
        got = {"inputs": inputs, "targets": targets, **stats}
        want_inputs, want_targets, want_stats = prepare_oracle(states, actions, next_states)
        want = {"inputs": want_inputs, "targets": want_targets, **want_stats}
        wrong = [key for key in want if not _close(got[key], want[key], 1e-9, 1e-7)]
        if not wrong:
            continue
        for wrong_values, message in prepare_mistakes(states, actions, next_states).values():
            if all(_close(got[key], wrong_values[key], 1e-9, 1e-7) for key in wrong):
                raise GradingError(f"{name}: {message}")
        key = wrong[0]
        raise GradingError(f"{name}: wrong {key} on a data set of n = {n} transitions, S = {S}, A = {A}:"
                           f"{_worst(got[key], want[key])}. x = [i, u], Δi = i' − i; m = 1/n Σ_n x_n, "
                           "s = sqrt(1/n Σ_n (x_n − m)²) per dimension.")


# ------------------------------------------------------------------------------ bound_log_variance
def bound_oracle(log_var, max_logvar, min_logvar):
    """lv := max − softplus(max − lv), then lv := min + softplus(lv − min)."""
    log_var = max_logvar - F.softplus(max_logvar - log_var)
    return min_logvar + F.softplus(log_var - min_logvar)


def bound_mistakes(log_var, max_logvar, min_logvar) -> dict[str, tuple[torch.Tensor, str]]:
    shape = log_var.shape
    return {
        "identity": (log_var.expand(shape), "the log-variance is not bounded at all. Outside the data a network's "
                     "log-variance can run off to ±∞ (infinitely sure, or infinitely unsure); PETS squashes it "
                     "softly into [min_logvar, max_logvar] with two softplus steps."),
        "clamp": (torch.minimum(torch.maximum(log_var, min_logvar), max_logvar).expand(shape),
                  "you clamp hard (torch.clamp): beyond a bound the gradient is cut off and the bounds cannot be "
                  "learned. Bound softly: lv := max − softplus(max − lv), then lv := min + softplus(lv − min)."),
        "upper_only": ((max_logvar - F.softplus(max_logvar - log_var)).expand(shape),
                       "only the upper bound is applied; then lv := min_logvar + softplus(lv − min_logvar)."),
        "lower_only": ((min_logvar + F.softplus(log_var - min_logvar)).expand(shape),
                       "only the lower bound is applied; first lv := max_logvar − softplus(max_logvar − lv)."),
        "lower_first": ((max_logvar - F.softplus(max_logvar - (min_logvar + F.softplus(log_var - min_logvar))))
                        .expand(shape), "the two steps are in the other order: first the upper bound, "
                        "lv := max − softplus(max − lv), then the lower bound."),
        "bounds_swapped": ((max_logvar + F.softplus((min_logvar - F.softplus(min_logvar - log_var)) - max_logvar))
                           .expand(shape), "max_logvar and min_logvar are swapped."),
    }


def check_bound_exact(bound_log_variance: Callable, seed: int = 0) -> None:
    """Equal to PETS' soft bounds on random log-variances and bounds of shape (K, 1, D) and (D,)."""
    name = "bound_log_variance"
    gen = _generator(200_000 + seed)
    for shape, bound_shape in (((4, 9, 3), (4, 1, 3)), ((6, 2), (2,))):
        log_var = 40 * torch.rand(shape, generator=gen, dtype=DTYPE) - 25
        max_logvar = 0.2 + torch.rand(bound_shape, generator=gen, dtype=DTYPE)
        min_logvar = -12 + 3 * torch.rand(bound_shape, generator=gen, dtype=DTYPE)
        got = visible._bound(bound_log_variance, log_var, max_logvar, min_logvar).detach().to(DTYPE)
        want = bound_oracle(log_var, max_logvar, min_logvar)
        if _close(got, want, 1e-9, 1e-7):
            continue
        message = _match(got, want, bound_mistakes(log_var, max_logvar, min_logvar))
        raise GradingError(f"{name}: {message}" if message else
                           f"{name}: wrong values:{_worst(got, want)}. lv := max − softplus(max − lv), then "
                           "lv := min + softplus(lv − min).")


# ------------------------------------------------------------------------------ gaussian_nll
def nll_oracle(mean, log_var, target):
    """−log N(y | μ, e^lv) from torch.distributions, averaged over the last two axes."""
    normal = torch.distributions.Normal(mean, torch.exp(0.5 * log_var))
    return -normal.log_prob(target).mean(dim=(-2, -1))


def nll_mistakes(mean, log_var, target) -> dict[str, tuple[torch.Tensor, str]]:
    error = (target - mean) ** 2
    axes = (-2, -1)
    return {
        "no_logvar_term": ((0.5 * (error * torch.exp(-log_var) + LOG_2PI)).mean(axes),
                           "the log-variance term ½ lv is missing. Without it the loss falls forever as lv grows: "
                           "the network could claim infinite variance and explain everything. "
                           "−log N(y | μ, e^lv) = ½ [(y − μ)² e^{−lv} + lv + log 2π]."),
        "logvar_as_variance": ((0.5 * (error / log_var + log_var + LOG_2PI)).mean(axes),
                               "you divide by log_var as if it were the variance. The network predicts the "
                               "LOGARITHM of the variance, σ² = e^lv: the quadratic term is (y − μ)² · e^{−lv}."),
        "exp_plus": ((0.5 * (error * torch.exp(log_var) + log_var + LOG_2PI)).mean(axes),
                     "the quadratic term multiplies by e^{+lv}; dividing by the variance e^lv is multiplying by "
                     "e^{−lv}."),
        "std_not_variance": ((0.5 * (error * torch.exp(-0.5 * log_var) + log_var + LOG_2PI)).mean(axes),
                             "the quadratic term divides by the standard deviation e^{lv/2}; it divides by the "
                             "variance e^lv."),
        "sum_not_mean": ((0.5 * (error * torch.exp(-log_var) + log_var + LOG_2PI)).sum(axes),
                         "you sum over the transitions and dimensions; average them (mean over the last two axes), "
                         "so that the loss does not grow with the batch size."),
        "no_half": ((error * torch.exp(-log_var) + log_var + LOG_2PI).mean(axes),
                    "the factor ½ is missing: −log N(y | μ, e^lv) = ½ [(y − μ)² e^{−lv} + lv + log 2π]."),
        "no_log_2pi": ((0.5 * (error * torch.exp(-log_var) + log_var)).mean(axes),
                       "the constant ½ log 2π is missing; it does not change the gradients, but the NLL is "
                       "½ [(y − μ)² e^{−lv} + lv + log 2π]."),
    }


def check_nll_exact(gaussian_nll: Callable, seed: int = 0) -> None:
    """Equal to −log N(y | μ, e^lv) averaged over transitions and dimensions, for ensembles and single networks."""
    name = "gaussian_nll"
    gen = _generator(210_000 + seed)
    for shape in ((3, 7, 2), (2, 5, 4), (6, 3)):
        mean, target = (torch.randn(shape, generator=gen, dtype=DTYPE) for _ in range(2))
        log_var = 6 * torch.rand(shape, generator=gen, dtype=DTYPE) - 3
        result = _call(name, gaussian_nll, mean, log_var, target)
        got = visible.expect_tensor(name, result)
        if not bool(torch.isfinite(got).all()):
            raise GradingError(
                f"{name} returned NaN or inf for log-variances in [-3, 3]. log_var is the logarithm of the variance: "
                "it may be negative; the variance is e^lv (do not take the log of log_var)."
            )
        got = expect_shape(name, got, tuple(shape[:-2]), "one value per member (mean over the last two axes)")
        got = got.detach().to(DTYPE)
        want = nll_oracle(mean, log_var, target)
        if _close(got, want, 1e-9, 1e-7):
            continue
        message = _match(got, want, nll_mistakes(mean, log_var, target))
        raise GradingError(f"{name}: {message}" if message else
                           f"{name}: wrong values for shape {shape}:{_worst(got, want)}. Per entry "
                           "½ [(y − μ)² e^{−lv} + lv + log 2π], then the mean over the last two axes.")


def check_nll_gradient(gaussian_nll: Callable, seed: int = 0) -> None:
    """Autograd through the NLL gives ∂/∂μ = −(y − μ) e^{−lv} / (B D) and ∂/∂lv = ½ (1 − (y − μ)² e^{−lv}) / (B D)."""
    name = "gaussian_nll"
    gen = _generator(220_000 + seed)
    K, B, D = 2, 5, 3
    mean = torch.randn(K, B, D, generator=gen, dtype=DTYPE).requires_grad_(True)
    log_var = (2 * torch.rand(K, B, D, generator=gen, dtype=DTYPE) - 1).requires_grad_(True)
    target = torch.randn(K, B, D, generator=gen, dtype=DTYPE)
    result = visible._nll(gaussian_nll, mean, log_var, target)
    if not result.requires_grad:
        raise GradingError(f"{name}: the loss carries no gradient; compute it with torch operations on the tensors "
                           "you are given (no .detach(), .item() or numpy).")
    result.sum().backward()
    precision = torch.exp(-log_var.detach())
    residual = (target - mean.detach())
    want_mean = -residual * precision / (B * D)
    want_log_var = 0.5 * (1 - residual**2 * precision) / (B * D)
    for label, grad, want in (("mean", mean.grad, want_mean), ("log_var", log_var.grad, want_log_var)):
        if grad is None or not _close(grad, want, 1e-9, 1e-6):
            raise GradingError(f"{name}: the gradient with respect to {label} is wrong"
                               f"{_worst(grad, want) if grad is not None else ' (none)'}; it follows from "
                               "½ [(y − μ)² e^{−lv} + lv + log 2π] averaged over B·D entries.")


# ------------------------------------------------------------------------------ bootstrap_indices
def check_bootstrap_statistics(bootstrap_indices: Callable, seed: int = 0) -> None:
    """Every index is drawn equally often, each row holds about 1 − (1 − 1/n)^n distinct indices, small n work."""
    name = "bootstrap_indices"
    n, K = 30, 60
    rows = visible._indices(bootstrap_indices, n, K, _generator(seed))
    counts = torch.bincount(rows.reshape(-1).long(), minlength=n).to(DTYPE)
    expected, sd = float(K), math.sqrt(K * (n - 1) / n)
    z = (counts - expected) / sd
    if float(z.abs().max()) > 5:
        j = int(z.abs().argmax())
        raise GradingError(
            f"{name}: over {K} members index {j} was drawn {int(counts[j])} times, expected about {K} ± {sd:.0f}. "
            "Every index must be equally likely: torch.randint(0, num_points, ...)."
        )
    distinct = torch.tensor([torch.unique(row).numel() / n for row in rows], dtype=DTYPE)
    want = 1 - (1 - 1 / n) ** n
    if abs(float(distinct.mean()) - want) > 5 * float(distinct.std()) / math.sqrt(K) + 0.01:
        raise GradingError(
            f"{name}: the rows hold {float(distinct.mean()):.1%} distinct indices on average; n draws with "
            f"replacement hold {want:.1%}. Draw each of the n indices of a row independently, with replacement."
        )
    for num_points, ensemble_size in ((1, 3), (5, 1)):
        small = visible._indices(bootstrap_indices, num_points, ensemble_size, _generator(seed + 1))
        if num_points == 1 and int(small.abs().sum()) != 0:
            raise GradingError(f"{name}: with one point every index must be 0.")


# ------------------------------------------------------------------------------ train_ensemble
def noisy_regression(seed: int, num_points: int = 160, noise: float = 0.3):
    """Normalised 1-D inputs in [-2, 2] and targets sin(1.5 x) + noise·ε: (x (n, 1), y (n, 1), noise)."""
    gen = _generator(230_000 + seed)
    x = 4 * torch.rand(num_points, 1, generator=gen) - 2
    y = torch.sin(1.5 * x) + noise * torch.randn(num_points, 1, generator=gen)
    return x, y, noise


def check_train_learns_noise(train_ensemble: Callable, seed: int = 0) -> None:
    """On y = sin(1.5 x) + 0.3 ε every member learns the mean (RMS < 0.3) and the noise variance (0.4 to 2.5 times 0.09)."""
    name = "train_ensemble"
    x, y, noise = noisy_regression(seed)
    K = 3
    member_indices = torch.randint(0, x.shape[0], (K, x.shape[0]), generator=_generator(240_000 + seed))
    net, losses = visible._train(train_ensemble, x, y, member_indices, epochs=50, batch_size=32, lr=5e-3, seed=seed)
    grid = torch.linspace(-1.7, 1.7, 25)[:, None]
    mean, log_var = visible._net_outputs(net, grid.expand(K, -1, -1), 1)
    truth = torch.sin(1.5 * grid).to(DTYPE)
    rms = ((mean - truth) ** 2).mean(dim=(1, 2)).sqrt()
    if float(rms.max()) > 0.3:
        raise GradingError(
            f"{name}: after 50 epochs on y = sin(1.5 x) + 0.3 ε the members' means are {fmt(rms)} (RMS) from sin(1.5 x); "
            "expected below 0.3. Check the minibatch loop: every minibatch takes an Adam step on "
            "gaussian_nll(...).sum() + 0.01 (Σ max_logvar − Σ min_logvar)."
        )
    variance = log_var.exp().mean(dim=(1, 2))
    if not bool(((variance > 0.4 * noise**2) & (variance < 2.5 * noise**2)).all()):
        raise GradingError(
            f"{name}: the data's noise variance is {noise**2:.3g}; the members predict variances {fmt(variance)}. The "
            "Gaussian NLL teaches the network its own noise level through lṽ: train on gaussian_nll (not the mean "
            "squared error), with the bound penalty 0.01 (Σ max_logvar − Σ min_logvar)."
        )


def check_train_uses_generator(train_ensemble: Callable, seed: int = 0) -> None:
    """Same generator seed -> the same trained members; another seed -> other members."""
    gen = _generator(250_000 + seed)
    x = torch.randn(24, 2, generator=gen)
    y = x[:, :1] - x[:, 1:] + 0.1 * torch.randn(24, 1, generator=gen)
    member_indices = torch.randint(0, 24, (2, 24), generator=gen)
    probe = torch.randn(2, 5, 2, generator=gen)

    def train(generator):
        result = _call("train_ensemble", train_ensemble, x, y, member_indices, 2, 8, 1e-2, generator, hidden_size=16)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise GradingError("train_ensemble: expected (net, epoch_losses).")
        return visible._net_outputs(result[0], probe, 1)

    visible.check_uses_generator("train_ensemble", train, seed)


# ------------------------------------------------------------------------------ predict_next_state
def predict_oracle(net, normalizers, states, actions, members):
    """mean = i + m_y + s_y μ̃, log_var = lṽ + 2 log s_y, with (μ̃, lṽ) = net(([i, u] − m_x) / s_x, members)."""
    x = (torch.cat([states, actions], dim=-1) - normalizers["input_mean"]) / normalizers["input_std"]
    mean, log_var = net(x, members)
    s_y = normalizers["target_std"]
    return states + normalizers["target_mean"] + s_y * mean, log_var + 2 * torch.log(s_y)


def predict_mistakes(net, normalizers, states, actions, members) -> dict[str, tuple[tuple, str]]:
    m_x, s_x = normalizers["input_mean"], normalizers["input_std"]
    m_y, s_y = normalizers["target_mean"], normalizers["target_std"]
    raw = torch.cat([states, actions], dim=-1)
    mean, log_var = net((raw - m_x) / s_x, members)
    raw_mean, raw_log_var = net(raw, members)
    first = torch.zeros_like(members)
    first_mean, first_log_var = net((raw - m_x) / s_x, first)
    right = 2 * torch.log(s_y)
    return {
        "raw_inputs": ((states + m_y + s_y * raw_mean, raw_log_var + right),
                       "the network gets the raw inputs [i, u]. It was trained on normalised inputs, so at "
                       "prediction time it must see them normalised the same way, x̃ = ([i, u] − input_mean) / "
                       "input_std (normalising in training only is a classic bug)."),
        "not_unnormalised": ((states + mean, log_var + right), "the mean adds the normalised μ̃ to i; un-normalise it "
                             "first: Δi = target_mean + target_std · μ̃."),
        "no_state": ((m_y + s_y * mean, log_var + right), "the mean is the change Δi; the next state is i + Δi."),
        "log_var_normalised": ((states + m_y + s_y * mean, log_var), "the log-variance is still in normalised units; "
                               "in raw units it is lṽ + 2 log target_std."),
        "log_var_one_log": ((states + m_y + s_y * mean, log_var + torch.log(s_y)),
                            "a variance scales with target_std²: add 2 log target_std, not log target_std."),
        "variance": ((states + m_y + s_y * mean, s_y**2 * torch.exp(log_var)),
                     "you return the variance; return its logarithm, lṽ + 2 log target_std."),
        "members_ignored": ((states + m_y + s_y * first_mean, first_log_var + right),
                            "every row used member 0; row m must use member members[m]: net(inputs, members)."),
    }


def check_predict_exact(predict_next_state: Callable, seed: int = 0) -> None:
    """Exact means and log-variances in raw units with a random member-dependent network and statistics."""
    name = "predict_next_state"
    S, A, K, M = 3, 2, 4, 12
    normalizers = visible.random_normalizers(seed + 300, S, A)
    states, actions, members = visible._rows(seed + 300, normalizers, M, S, A, K)
    mean, log_var = visible._predict(predict_next_state, visible.FakeNet(seed, S, A, K), normalizers, states, actions,
                                     members)
    reference = visible.FakeNet(seed, S, A, K)
    want_mean, want_log_var = predict_oracle(reference, normalizers, states, actions, members)
    if _close(mean, want_mean) and _close(log_var, want_log_var):
        return
    for (wrong_mean, wrong_log_var), message in predict_mistakes(reference, normalizers, states, actions,
                                                                members).values():
        if _close(mean, wrong_mean) and _close(log_var, wrong_log_var):
            raise GradingError(f"{name}: {message}")
    which, got, want = ("mean", mean, want_mean) if not _close(mean, want_mean) else ("log_var", log_var, want_log_var)
    raise GradingError(f"{name}: wrong {which}:{_worst(got, want)}. x̃ = ([i, u] − m_x) / s_x; mean = i + m_y + s_y μ̃; "
                       "log σ² = lṽ + 2 log s_y.")


# ------------------------------------------------------------------------------ expected_returns
def _sequence_of_rows(actions_seen: torch.Tensor, action_sequences: torch.Tensor) -> torch.Tensor:
    """For each particle (row), the sequence n whose first action it was given: (M,)."""
    first = action_sequences[:, 0]  # (N, A)
    distance = (actions_seen[:, None, :] - first[None]).abs().amax(dim=-1)  # (M, N)
    best = distance.argmin(dim=1)
    if float(distance.gather(1, best[:, None]).max()) > 1e-9:
        raise GradingError("expected_returns: some particle was given an action that is not u^n_1 of any sequence.")
    return best


def _members_per_step(model: visible.DriftModel, horizon: int, name: str = "expected_returns") -> torch.Tensor:
    if len(model.calls) != horizon:
        raise GradingError(f"{name} called predict {len(model.calls)} times for H = {horizon}; expected one call "
                           "per step with all particles.")
    sizes = {call[0].shape[0] for call in model.calls}
    if len(sizes) != 1:
        raise GradingError(f"{name}: the number of particles changed between steps ({sorted(sizes)}).")
    return torch.stack([call[2] for call in model.calls]).long()  # (H, M)


def check_returns_exact(expected_returns: Callable, seed: int = 0) -> None:
    """Ĝ_n = 1/P Σ_p Σ_t g(i_t, u^n_t, i_{t+1}) exactly, in a noiseless model whose members differ, given the
    members the particles drew (and kept)."""
    name = "expected_returns"
    gen = _generator(260_000 + seed)
    N, H, P, K, S, A = 4, 3, 5, 3, 2, 1
    drifts = 0.5 * torch.randn(K, S, generator=gen, dtype=DTYPE)
    B = torch.randn(S, A, generator=gen, dtype=DTYPE)
    model = visible.DriftModel(drifts, -40.0, B)
    state = torch.randn(S, generator=gen, dtype=DTYPE)
    actions = torch.randn(N, H, A, generator=gen, dtype=DTYPE)

    def reward_fn(i, u, following):
        return -(following**2).sum(-1) - 0.1 * (u**2).sum(-1) + 0.2 * i[..., 0]

    got = visible._returns(expected_returns, model, reward_fn, state, actions, K, P, seed)
    members = _members_per_step(model, H)
    if bool((members != members[0]).any()):
        raise GradingError(f"{name}: a particle used another member at a later step; under TS∞ each particle keeps the "
                           "member it drew before the first step.")
    sequence = _sequence_of_rows(model.calls[0][1], actions)
    per_row = torch.zeros(members.shape[1], dtype=DTYPE)
    swapped = torch.zeros_like(per_row)
    for row in range(members.shape[1]):
        k, n = int(members[0, row]), int(sequence[row])
        current = state[None]
        for t in range(H):
            following = current + drifts[k] + actions[n, t][None] @ B.T
            per_row[row] += reward_fn(current, actions[n, t][None], following)[0]
            swapped[row] += reward_fn(following, actions[n, t][None], current)[0]
            current = following
    count = torch.bincount(sequence, minlength=N).to(DTYPE)
    want = torch.zeros(N, dtype=DTYPE).index_add_(0, sequence, per_row) / count
    if _close(got, want, 1e-6, 1e-6):
        return
    mistakes = {
        "summed": (want * count, "you sum the returns of the particles; Ĝ_n is their average, 1/P Σ_p G^{n,p}."),
        "swapped": (torch.zeros(N, dtype=DTYPE).index_add_(0, sequence, swapped) / count,
                    "the reward is called as g(i_{t+1}, u_t, i_t); it takes (state, action, next state): "
                    "g(i_t, u_t, i_{t+1})."),
    }
    message = _match(got, want, mistakes, 1e-6, 1e-6)
    raise GradingError(f"{name}: {message}" if message else
                       f"{name}: in a noiseless model with members of different drift, given the members your particles "
                       f"drew, Ĝ should be {fmt(want)}; you return {fmt(got)}. Each particle starts at the state, "
                       "follows its sequence's actions through its member, and sums g(i_t, u_t, i_{t+1}) over t = 1..H; "
                       "Ĝ_n averages the P particles of sequence n.")


def check_returns_members_uniform(expected_returns: Callable, seed: int = 0) -> None:
    """TS∞ draws the members uniformly: over N·P particles each of K members gets about N·P / K."""
    name = "expected_returns"
    N, H, P, K = 150, 2, 4, 3
    model = visible.DriftModel(torch.tensor([[0.1], [0.0], [-0.1]]), -4.0)
    visible._returns(expected_returns, model, visible.negative_square_reward, torch.zeros(1, dtype=DTYPE),
                     torch.zeros(N, H, 1, dtype=DTYPE), K, P, seed)
    members = _members_per_step(model, H)
    counts = torch.bincount(members[0], minlength=K).to(DTYPE)
    M = N * P
    sd = math.sqrt(M * (1 / K) * (1 - 1 / K))
    if float((counts - M / K).abs().max()) > 5 * sd:
        raise GradingError(f"{name}: the {M} particles use the members {counts.long().tolist()} times; drawn uniformly "
                           f"each would get about {M / K:.0f} ± {sd:.0f}. Draw k ~ U{{0, ..., K − 1}} per particle.")


def check_returns_noise(expected_returns: Callable, seed: int = 0) -> None:
    """The next state is sampled from the member's Gaussian, i' = μ + e^{lv/2} ε: with σ² = 0.25 and g = −i'², a
    random walk from 0 earns E[G] = −σ² (1 + 2 + 3) = −1.5 over H = 3 steps."""
    name = "expected_returns"
    N, H, P = 300, 3, 4
    variance = 0.25
    model = visible.DriftModel(torch.zeros(1, 1), math.log(variance))
    got = visible._returns(expected_returns, model, visible.negative_square_reward, torch.zeros(1, dtype=DTYPE),
                           torch.zeros(N, H, 1, dtype=DTYPE), 1, P, seed)
    mean, error = float(got.mean()), float(got.std()) / math.sqrt(N)
    want = -variance * H * (H + 1) / 2
    if abs(mean - want) <= 5 * error + 0.02:
        return
    for value, message in (
            (0.0, "your particles do not move: sample the next state from the member's Gaussian, "
                  "i' = μ + e^{lv/2} ε with ε ~ N(0, I) (torch.randn with the generator)."),
            (-variance**2 * H * (H + 1) / 2, "your noise has standard deviation e^{lv} (the variance); it is "
                                             "σ = e^{lv/2}."),
            (-H * (H + 1) / 2, "your noise has standard deviation 1; scale ε by σ = e^{lv/2}."),
            (P * want, "you sum the returns of the particles; average them.")):
        if abs(mean - value) <= 5 * error + 0.02:
            raise GradingError(f"{name}: with one member predicting i' ~ N(i, {variance}) and g = −i'², E[Ĝ] = {want}; "
                               f"yours average {mean:.3g}: {message}")
    raise GradingError(f"{name}: with one member predicting i' ~ N(i, {variance}) and g = −i'², the returns should "
                       f"average {want} (random walk); yours average {mean:.3g} ± {error:.2g}. Sample i' = μ + e^{{lv/2}} ε.")


def check_returns_ts1(expected_returns: Callable, seed: int = 0) -> None:
    """propagation="ts1" draws every particle's member afresh at every step: with members drifting ±1 and no noise,
    a particle is a random walk and E[G] = −Σ_t t, not −Σ_t t² (TS∞)."""
    name = "expected_returns"
    N, H, P = 400, 4, 1
    model = visible.DriftModel(torch.tensor([[1.0], [-1.0]]), -40.0)
    got = visible._returns(expected_returns, model, visible.negative_square_reward, torch.zeros(1, dtype=DTYPE),
                           torch.zeros(N, H, 1, dtype=DTYPE), 2, P, seed, propagation="ts1")
    members = _members_per_step(model, H)
    changed = float((members != members[0]).any(dim=0).to(DTYPE).mean())
    if changed < 0.6:  # 7/8 of the particles change their member at least once in 4 fair draws
        raise GradingError(
            f"{name}: with propagation=\"ts1\" only {changed:.0%} of the particles ever changed their member over "
            f"{H} steps; TS1 draws each particle's member afresh at every step (about 7/8 would change)."
        )
    mean, error = float(got.mean()), float(got.std()) / math.sqrt(N) + 1e-9
    want = -H * (H + 1) / 2
    if abs(mean - want) > 5 * error + 0.05:
        raise GradingError(f"{name}: TS1 with members drifting ±1 is a random walk, E[G] = −Σ_t t = {want}; your "
                           f"returns average {mean:.3g} ± {error:.2g}.")


def check_returns_generator(expected_returns: Callable, seed: int = 0) -> None:
    """Same generator seed -> the same Ĝ, another seed -> another Ĝ (members and noise come from the generator)."""
    model = visible.DriftModel(torch.tensor([[0.3, 0.0], [-0.2, 0.1], [0.0, -0.3]]), math.log(0.1))
    actions = torch.randn(5, 3, 1, generator=_generator(seed), dtype=DTYPE)
    visible.check_uses_generator(
        "expected_returns",
        lambda g: expected_returns(model, visible.negative_square_reward, torch.zeros(2, dtype=DTYPE), actions, 3, 4, g),
        seed)


# ------------------------------------------------------------------------------ pets_action
def point_mass(bias: float = 0.002):
    """A point mass p, v (Δt = 0.1, force u ∈ [-1, 1]) that should reach p* = 1: the true step, a two-member
    ``predict`` around it (members off by ±bias in velocity, σ = 0.01) and the reward."""
    dt, target = 0.1, 1.0

    def step(state, action):
        velocity = state[..., 1] + dt * action[..., 0]
        return torch.stack((state[..., 0] + dt * velocity, velocity), dim=-1)

    def predict(states, actions, members):
        mean = step(states, actions)
        mean = mean + torch.stack((torch.zeros_like(mean[:, 0]), bias * (2 * members.to(mean.dtype) - 1)), dim=-1)
        return mean, torch.full_like(mean, math.log(1e-4))

    def reward_fn(state, action, following):
        return -((following[..., 0] - target) ** 2) - 0.1 * following[..., 1] ** 2 - 0.01 * (action**2).sum(-1)

    return step, predict, reward_fn, target


def check_pets_action_closed_loop(pets_action: Callable, seed: int = 0, steps: int = 25) -> None:
    """With the reference CEM and a two-member model of a point mass, MPC with pets_action brings it to p* = 1."""
    from mbrl_course.planning import CEM

    name = "pets_action"
    step, predict, reward_fn, target = point_mass()
    planner = CEM(horizon=10, action_low=[-1.0], action_high=[1.0], population=100, elites=10, iterations=4,
                  momentum=0.1, device="cpu", seed=seed, dtype=DTYPE)
    state = torch.zeros(2, dtype=DTYPE)
    for _ in range(steps):
        action = _call(name, pets_action, predict, reward_fn, state.clone(), planner.plan, 2, 4, _generator(seed))
        action = expect_shape(name, action, (1,), "(A,)")
        expect_finite(name, action)
        state = step(state[None], action.detach().to(DTYPE).clamp(-1, 1)[None])[0]
    if abs(float(state[0]) - target) > 0.25:
        raise GradingError(
            f"{name}: driven by the reference CEM in a two-member model of a point mass, {steps} MPC steps moved the "
            f"position from 0 to {float(state[0]):.3g}; the reward pulls it to {target:g}. Check that the objective "
            "scores each action sequence by its expected return from the current state."
        )


# ------------------------------------------------------------------------------ independence
def _independence_args(name: str, seed: int):
    gen = _generator(270_000 + seed)
    states, actions, next_states = visible.random_transitions(seed, 10, 2, 1)
    normalizers = visible.random_normalizers(seed, 2, 1)
    model = visible.DriftModel(torch.tensor([[0.1, 0.0], [0.0, 0.1]]), -3.0)
    args = {
        "prepare_training_data": lambda: ((states, actions, next_states), {}),
        "bound_log_variance": lambda: ((torch.randn(2, 3, 2, generator=gen, dtype=DTYPE), torch.ones(2, 1, 2, dtype=DTYPE),
                                        -torch.ones(2, 1, 2, dtype=DTYPE)), {}),
        "gaussian_nll": lambda: ((*(torch.randn(2, 3, 2, generator=gen, dtype=DTYPE) for _ in range(3)),), {}),
        "bootstrap_indices": lambda: ((10, 3, _generator(seed)), {}),
        "train_ensemble": lambda: ((torch.randn(12, 3, generator=gen), torch.randn(12, 2, generator=gen),
                                    torch.randint(0, 12, (2, 12), generator=gen), 2, 6, 1e-2, _generator(seed)),
                                   {"hidden_size": 8}),
        "predict_next_state": lambda: ((visible.FakeNet(seed, 2, 1, 2), normalizers, states[:4], actions[:4],
                                        torch.tensor([0, 1, 1, 0])), {}),
        "expected_returns": lambda: ((model, visible.negative_square_reward, torch.zeros(2, dtype=DTYPE),
                                      torch.zeros(3, 2, 1, dtype=DTYPE), 2, 2, _generator(seed)), {}),
        "pets_action": lambda: ((model, visible.negative_square_reward, torch.zeros(2, dtype=DTYPE),
                                 visible.SpyPlanner(torch.zeros(3, 1, dtype=DTYPE)), 2, 2, _generator(seed)), {}),
    }
    if name not in args:
        raise ValueError(f"name: expected one of {sorted(args)}, got {name!r}")
    return args[name]()


def _remote_session():
    """The sandbox session a test cell runs against when grading (None in a notebook or a test)."""
    remote = sys.modules.get("mbrl_course.grading.remote")
    current = getattr(remote, "current", None)
    return current() if callable(current) else None


def _expect_independent(name: str, call: Callable, package: str) -> None:
    """:func:`expect_independent`, also for a reference that is one module file (``mbrl_course.data``).

    ``checks.reference_calls`` watches the folder of what it is given: for a module file that is the
    whole ``mbrl_course`` folder (every function of the package, the checks included), so here a module
    file is watched on its own. When grading, the sandbox reports attempts by name: no watching needed.
    """
    module = importlib.import_module(package)
    if hasattr(module, "__path__") or _remote_session() is not None:
        expect_independent(name, call, package)
        return
    path = os.path.realpath(module.__file__)
    seen: list[str] = []

    def hook(frame, event, arg):
        if event == "call" and os.path.realpath(frame.f_code.co_filename) == path:
            seen.append(frame.f_code.co_name)

    previous = sys.getprofile()
    threading.setprofile(hook)
    sys.setprofile(hook)
    try:
        call()
    finally:
        sys.setprofile(previous)
        threading.setprofile(None)
    if seen:
        raise GradingError(
            f"{name} called the reference implementation in {package} ({', '.join(dict.fromkeys(seen))}). This "
            f"exercise asks you to implement it yourself with torch operations; a solution that calls {package} "
            "scores 0 here."
        )


def check_no_reference_calls(name: str, fn: Callable, seed: int = 0,
                      packages: tuple[str, ...] = ("mbrl_course.models", "mbrl_course.data")) -> None:
    """``fn`` (the student's function called ``name``) runs without code of the reference packages."""
    for package in packages:
        args, kwargs = _independence_args(name, seed)
        _expect_independent(name, lambda args=args, kwargs=kwargs: _call(name, fn, *args, **kwargs), package)
