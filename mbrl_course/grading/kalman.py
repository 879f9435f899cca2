"""Visible checks of Assignment 2, "Kalman filtering and learning by marginal likelihood" (``solutions/02-kalman``).

The student implements the slide's Kalman filter in its notation, p(s_0) = N(m_0, S_0),
p(s_t | s_{t-1}) = N(E_t s_{t-1}, F_t), p(y_t | s_t) = N(C s_t, D):

- ``predict_step(m, S, E, F) -> (mu, Sigma)``: p(s_t | Y_{1:t-1}) = N(μ_t, Σ_t), μ_t = E_t m_{t-1},
  Σ_t = F_t + E_t S_{t-1} E_tᵀ;
- ``update_step(mu, Sigma, y, C, D) -> (m, S)``: p(s_t | Y_{1:t}) = N(m_t, S_t), in the slide's
  information form or the equivalent gain form;
- ``log_predictive(mu, Sigma, y, C, D) -> (...)``: log p(y_t | Y_{1:t-1}) = log N(y_t | ŷ_t, V_t),
  ŷ_t = C μ_t, V_t = D + C Σ_t Cᵀ;
- ``kalman_log_likelihood(Y, m0, S0, E, F, C, D) -> ()``: log p(Y_{1:T}) = Σ_t log p(y_t | Y_{1:t-1});
- ``fit(log_likelihood, initial_params, num_steps, learning_rate) -> (params, trace)``: gradient
  ascent on a log-likelihood with ``torch.optim.Adam`` and autograd.

Each ``check_*`` function draws its own random model from ``seed`` (float64, the sizes it is
given), runs the student's function on it and compares the result with the exact answer for that
model, computed inside the check by a route that shares no code with the recursion (the Schur
complement of the joint Gaussian of (s_t, y_t); ``torch.distributions.MultivariateNormal``; the
closed-form joint density of all observations of a random walk; Adam's first step). A check
raises :class:`~mbrl_course.grading.report.GradingError` with a message that names the mistake where
it recognises one (a missing F_t, E_t S_{t-1} without E_tᵀ, a missing log 2π, the terms averaged
instead of summed, gradient descent instead of ascent, ...); any numerically equivalent correct
implementation passes.

A check never takes the student's inputs and never returns an expected answer: nothing here
computes what a student's function should return for inputs of the student's choosing, and nothing
here imports the reference implementation :mod:`mbrl_course.filters` (graded notebooks run where
it is absent). The hidden tests, which only the instructor has
(``solutions/hidden_checks/kalman.py``, loaded with :func:`mbrl_course.grading.instructor.hidden_checks`),
call these checks again on other seeds and sizes and add the exact oracles for any input, the
comparisons with the reference implementation and their catalogues of mistakes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mbrl_course.grading.checks import call_student as _call
from mbrl_course.grading.checks import expect_finite, expect_independent, expect_shape, expect_tensor, fmt
from mbrl_course.grading.checks import expect_pair as _pair
from mbrl_course.grading.report import GradingError

DTYPE = torch.float64
LOG_2PI = math.log(2.0 * math.pi)
ATOL, RTOL = 1e-8, 1e-6
"""Tolerances for exact float64 results: round-off of any correct form is far below them."""

BATCH_HINT = (
    " Write it for leading batch dimensions: `@` multiplies the last two dimensions batch by batch, "
    "`.mT` transposes the last two dimensions (`.T` reverses all of them), and vectors become "
    "columns with `.unsqueeze(-1)`."
)


def _single_threaded(check: Callable) -> Callable:
    """Run a check with one torch thread: its matrices are tiny, and on a busy machine the thread pool's
    synchronisation costs far more than the arithmetic (the caller's setting is restored afterwards)."""

    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


# ------------------------------------------------------------------------------ random models
def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_spd(size: int, generator: torch.Generator, low: float = 0.2, high: float = 2.0,
               batch: Sequence[int] = ()) -> torch.Tensor:
    """A random symmetric positive-definite matrix ``(*batch, size, size)`` with eigenvalues in [low, high]."""
    basis, _ = torch.linalg.qr(torch.randn(*batch, size, size, generator=generator, dtype=DTYPE))
    eigenvalues = low + (high - low) * torch.rand(*batch, size, generator=generator, dtype=DTYPE)
    spd = (basis * eigenvalues.unsqueeze(-2)) @ basis.mT
    return 0.5 * (spd + spd.mT)


@dataclass
class RandomModel:
    """A linear-Gaussian SSM with random, non-symmetric E and C, and its sampled observations."""

    m0: torch.Tensor
    """m_0: (*batch, dx)"""
    S0: torch.Tensor
    """S_0: (*batch, dx, dx)"""
    E: torch.Tensor
    """E: (*batch, dx, dx), non-symmetric, spectral radius 0.95 (the identity for a random walk)"""
    F: torch.Tensor
    """F: (*batch, dx, dx)"""
    C: torch.Tensor
    """C: (*batch, dy, dx)"""
    D: torch.Tensor
    """D: (*batch, dy, dy)"""
    Y: torch.Tensor
    """observations y_1..y_T sampled from the model: (*batch, T, dy)"""


def random_model(seed: int, state_dim: int = 3, obs_dim: int = 2, num_steps: int = 10,
                 batch: Sequence[int] = (), random_walk: bool = False) -> RandomModel:
    """Draw a model (and T observations from it) from ``seed``; ``random_walk``: E = I, the state drifts."""
    gen = _generator(1_000 + seed)
    batch = tuple(batch)
    A = torch.randn(*batch, state_dim, state_dim, generator=gen, dtype=DTYPE)
    radius = torch.linalg.eigvals(A).abs().amax(-1)[..., None, None].clamp_min(1e-3)
    E = 0.95 * A / radius
    if random_walk:
        E = torch.eye(state_dim, dtype=DTYPE).expand_as(E).clone()
    m0 = torch.randn(*batch, state_dim, generator=gen, dtype=DTYPE)
    S0 = random_spd(state_dim, gen, 0.3, 2.0, batch)
    F = random_spd(state_dim, gen, 0.1, 1.0, batch)
    C = torch.randn(*batch, obs_dim, state_dim, generator=gen, dtype=DTYPE)
    D = random_spd(obs_dim, gen, 0.2, 1.0, batch)
    s = m0 + (torch.linalg.cholesky(S0) @ torch.randn(*batch, state_dim, 1, generator=gen, dtype=DTYPE)).squeeze(-1)
    ys = []
    for _ in range(num_steps):
        s = (E @ s.unsqueeze(-1)).squeeze(-1) + (
            torch.linalg.cholesky(F) @ torch.randn(*batch, state_dim, 1, generator=gen, dtype=DTYPE)).squeeze(-1)
        ys.append((C @ s.unsqueeze(-1)).squeeze(-1) + (
            torch.linalg.cholesky(D) @ torch.randn(*batch, obs_dim, 1, generator=gen, dtype=DTYPE)).squeeze(-1))
    return RandomModel(m0, S0, E, F, C, D, torch.stack(ys, dim=-2))


def random_moments(seed: int, state_dim: int = 3, obs_dim: int = 2, batch: Sequence[int] = ()):
    """(μ, Σ, y, C, D) for one update: a random predictive p(s_t | Y_{1:t-1}) and an observation."""
    gen = _generator(2_000 + seed)
    mu = torch.randn(*batch, state_dim, generator=gen, dtype=DTYPE)
    Sigma = random_spd(state_dim, gen, 0.3, 2.0, batch)
    C = torch.randn(*batch, obs_dim, state_dim, generator=gen, dtype=DTYPE)
    D = random_spd(obs_dim, gen, 0.2, 1.0, batch)
    y = (C @ mu.unsqueeze(-1)).squeeze(-1) + torch.randn(*batch, obs_dim, generator=gen, dtype=DTYPE)
    return mu, Sigma, y, C, D


# ------------------------------------------------------------------------------ helpers
def _close(got: torch.Tensor, want: torch.Tensor, atol: float = ATOL, rtol: float = RTOL) -> bool:
    if tuple(got.shape) != tuple(want.shape):
        return False
    got = got.detach().to(DTYPE)
    return bool(torch.isfinite(got).all()) and bool(((got - want).abs() <= atol + rtol * want.abs()).all())


def _largest_difference(got: torch.Tensor, want: torch.Tensor) -> str:
    diff = (got.detach().to(DTYPE) - want).abs()
    index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
    where = f" at index {index}" if index else ""
    return f"{where} you have {float(got[index]):.6g}, expected {float(want[index]):.6g}"


def _expect_value(name: str, got: torch.Tensor, want: torch.Tensor, what: str,
                  mistakes: Callable[[], dict[str, tuple[torch.Tensor, str]]] | None = None, hint: str = "") -> None:
    """``got`` ≈ ``want``; otherwise name a recognised mistake (``mistakes()``: label -> (its value, message))."""
    got = expect_shape(name, got, tuple(want.shape))
    expect_finite(name, got)
    if _close(got, want):
        return
    for wrong, message in (mistakes() if mistakes is not None else {}).values():
        if _close(got, wrong, atol=1e-7, rtol=1e-5) and not _close(wrong, want):
            raise GradingError(f"{name}: wrong {what}: {message}")
    raise GradingError(f"{name}: wrong {what}:{_largest_difference(got, want)}. {hint}".rstrip())


def _expect_symmetric(name: str, cov: torch.Tensor, symbol: str, hint: str) -> None:
    cov = cov.detach().to(DTYPE)
    asym = float((cov - cov.mT).abs().max())
    if asym > 1e-8 * max(1.0, float(cov.abs().max())):
        raise GradingError(
            f"{name}: your {symbol} is not symmetric (largest |{symbol} - {symbol}ᵀ| = {asym:.3g}); a covariance "
            f"is symmetric. {hint}".rstrip()
        )


def _batched(name: str, fn: Callable, batched_args: tuple, single: Callable[[int], tuple], outputs: int) -> None:
    """``fn`` on a batch of B problems equals ``fn`` on each problem alone (the per-problem answers are checked elsewhere)."""
    try:
        result = fn(*batched_args)
    except GradingError:
        raise
    except NotImplementedError:
        raise GradingError(f"{name}: not implemented yet: replace `raise NotImplementedError()` with your code") from None
    except Exception as err:  # noqa: BLE001 (the student's code crashed on a batch)
        raise GradingError(
            f"{name} works for one model but raised {type(err).__name__} on a batch of models "
            f"(leading dimension B = {batched_args[0].shape[0]}): {str(err).splitlines()[0] if str(err) else ''}."
            + BATCH_HINT
        ) from None
    results = result if outputs > 1 else (result,)
    if outputs > 1 and (not isinstance(result, (tuple, list)) or len(result) != outputs):
        raise GradingError(f"{name} returned a {type(result).__name__} on a batch; expected {outputs} tensors.")
    batch = batched_args[0].shape[0]
    for b in range(batch):
        alone = _call(name, fn, *single(b))
        alone = alone if outputs > 1 else (alone,)
        for k, (got, want) in enumerate(zip(results, alone)):
            got = expect_tensor(name, got)
            want = expect_tensor(name, want).detach().to(DTYPE)
            if tuple(got.shape) != (batch, *want.shape):
                raise GradingError(
                    f"{name}: on a batch of {batch} models output {k + 1} has shape {tuple(got.shape)}; expected "
                    f"{(batch, *want.shape)}, one result per model." + BATCH_HINT
                )
            if not _close(got[b], want, atol=1e-9, rtol=1e-7):
                raise GradingError(
                    f"{name}: on a batch of models, model {b} gets another answer than alone (output {k + 1}:"
                    f"{_largest_difference(got[b], want)})." + BATCH_HINT
                )


@_single_threaded
def check_independent(name: str, fn: Callable, seed: int = 0) -> None:
    """``fn`` (the student's function called ``name``) runs without any code of ``mbrl_course.filters``."""
    model = random_model(seed, 3, 2, num_steps=4)
    mu, Sigma, y, C, D = random_moments(seed)
    target = torch.tensor([0.5, -1.0], dtype=DTYPE)
    args = {
        "predict_step": lambda: (model.m0, model.S0, model.E, model.F),
        "update_step": lambda: (mu, Sigma, y, C, D),
        "log_predictive": lambda: (mu, Sigma, y, C, D),
        "kalman_log_likelihood": lambda: (model.Y, model.m0, model.S0, model.E, model.F, model.C, model.D),
        "fit": lambda: (lambda x: -((x - target) ** 2).sum(), [torch.zeros(2, dtype=DTYPE)], 3, 0.1),
    }
    if name not in args:
        raise ValueError(f"name: expected one of {sorted(args)}, got {name!r}")
    expect_independent(name, lambda: _call(name, fn, *args[name]()), "mbrl_course.filters")


# ------------------------------------------------------------------------------ predict_step
PREDICT_HINT = "μ_t = E_t m_{t-1} and Σ_t = F_t + E_t S_{t-1} E_tᵀ."


def _predict(predict_step: Callable, m, S, E, F) -> tuple[torch.Tensor, torch.Tensor]:
    return _pair("predict_step", _call("predict_step", predict_step, m, S, E, F), "mu", "Sigma")


@_single_threaded
def check_predict_step_shapes(predict_step: Callable, seed: int = 0) -> None:
    """predict_step returns (μ_t: (dx,), Σ_t: (dx, dx))."""
    model = random_model(seed, state_dim=3)
    mu, Sigma = _predict(predict_step, model.m0, model.S0, model.E, model.F)
    expect_shape("predict_step (mu)", mu, (3,), "(dx,)")
    expect_shape("predict_step (Sigma)", Sigma, (3, 3), "(dx, dx)")


@_single_threaded
def check_predict_step_mean(predict_step: Callable, seed: int = 0, state_dim: int = 3) -> None:
    """μ_t = E_t m_{t-1}."""
    model = random_model(seed, state_dim=state_dim)
    m, E = model.m0, model.E
    mu, _ = _predict(predict_step, m, model.S0, E, model.F)
    _expect_value("predict_step", mu, E @ m, "predicted mean μ_t", lambda: {
        "forgot E": (m, "you returned m_{t-1} itself; the state moves: μ_t = E_t m_{t-1}."),
        "transposed": (E.mT @ m, "you computed E_tᵀ m_{t-1}; the mean is μ_t = E_t m_{t-1}."),
    }, hint=PREDICT_HINT)


@_single_threaded
def check_predict_step_cov(predict_step: Callable, seed: int = 0, state_dim: int = 3) -> None:
    """Σ_t = F_t + E_t S_{t-1} E_tᵀ, symmetric."""
    model = random_model(seed, state_dim=state_dim)
    S, E, F = model.S0, model.E, model.F
    _, Sigma = _predict(predict_step, model.m0, S, E, F)
    Sigma = expect_shape("predict_step (Sigma)", Sigma, (state_dim, state_dim), "(dx, dx)")
    want = F + E @ S @ E.mT
    mistakes = {  # this example's Σ_t computed with the usual slips: label -> (value, message)
        "no F": (E @ S @ E.mT, "Σ_t is missing the transition noise F_t: Σ_t = F_t + E_t S_{t-1} E_tᵀ."),
        "E S": (F + E @ S, "you computed F_t + E_t S_{t-1}: the trailing E_tᵀ is missing (your Σ_t is not even "
                           "symmetric). s_t = E_t s_{t-1} + w_t, so Cov(s_t) = E_t S_{t-1} E_tᵀ + F_t."),
        "E S^T": (F + E @ S.mT, "you computed F_t + E_t S_{t-1}ᵀ: the trailing E_tᵀ is missing. "
                                "Cov(E_t s) = E_t S_{t-1} E_tᵀ."),
        "S E^T": (F + S @ E.mT, "you computed F_t + S_{t-1} E_tᵀ: the leading E_t is missing. "
                                "Cov(E_t s) = E_t S_{t-1} E_tᵀ."),
        "E^T S E": (F + E.mT @ S @ E, "you computed E_tᵀ S_{t-1} E_t: the transposes are on the wrong side. "
                                      "s_t = E_t s_{t-1} + w_t, so Cov(s_t) = E_t S_{t-1} E_tᵀ + F_t."),
        "E S E": (F + E @ S @ E, "you computed E_t S_{t-1} E_t: transpose the second E_t (E_t S_{t-1} E_tᵀ)."),
        "no E": (F + S, "you added F_t to S_{t-1} without propagating it through E_t: Σ_t = F_t + E_t S_{t-1} E_tᵀ."),
        "F twice": (2 * F + E @ S @ E.mT, "you added F_t twice: Σ_t = F_t + E_t S_{t-1} E_tᵀ."),
    }
    for wrong, message in mistakes.values():  # name a recognised mistake before the symmetry
        if _close(Sigma, wrong, atol=1e-7, rtol=1e-5) and not _close(wrong, want):
            raise GradingError(f"predict_step: wrong predicted covariance Σ_t: {message}")
    _expect_symmetric("predict_step", Sigma, "predicted covariance Σ_t", "Σ_t = F_t + E_t S_{t-1} E_tᵀ.")
    _expect_value("predict_step", Sigma, want, "predicted covariance Σ_t", hint="Σ_t = F_t + E_t S_{t-1} E_tᵀ.")


@_single_threaded
def check_predict_step_batched(predict_step: Callable, seed: int = 0, batch: int = 4) -> None:
    """With leading batch dimensions (B models), each model's (μ_t, Σ_t) is its own."""
    model = random_model(seed, state_dim=3, batch=(batch,))
    args = (model.m0, model.S0, model.E, model.F)
    _batched("predict_step", predict_step, args, lambda b: tuple(a[b] for a in args), outputs=2)


# ------------------------------------------------------------------------------ update_step
UPDATE_HINT = ("S_t = (Σ_t⁻¹ + Cᵀ D⁻¹ C)⁻¹, m_t = S_t (Cᵀ D⁻¹ y_t + Σ_t⁻¹ μ_t); or, equivalently, "
               "K = Σ_t Cᵀ V_t⁻¹ with V_t = D + C Σ_t Cᵀ, m_t = μ_t + K (y_t - C μ_t), S_t = Σ_t - K V_t Kᵀ.")


def _update(update_step: Callable, mu, Sigma, y, C, D) -> tuple[torch.Tensor, torch.Tensor]:
    return _pair("update_step", _call("update_step", update_step, mu, Sigma, y, C, D), "m", "S")


@_single_threaded
def check_update_step_shapes(update_step: Callable, seed: int = 0) -> None:
    """update_step returns (m_t: (dx,), S_t: (dx, dx)) for dy != dx."""
    mu, Sigma, y, C, D = random_moments(seed, state_dim=3, obs_dim=2)
    m, S = _update(update_step, mu, Sigma, y, C, D)
    expect_shape("update_step (m)", m, (3,), "(dx,)")
    expect_shape("update_step (S)", S, (3, 3), "(dx, dx)")


def _check_update_example(update_step: Callable, seed: int, dx: int, dy: int) -> None:
    """update_step on the moments drawn from ``seed`` against the exact conditional; name a recognised mistake."""
    label = f" (dx = {dx}, dy = {dy})"
    mu, Sigma, y, C, D = random_moments(seed, state_dim=dx, obs_dim=dy)
    m, S = _update(update_step, mu, Sigma, y, C, D)
    m = expect_shape("update_step (m)", m, (dx,), "(dx,)")
    S = expect_shape("update_step (S)", S, (dx, dx), "(dx, dx)")
    cross, V = Sigma @ C.mT, C @ Sigma @ C.mT + D  # Cov(s, y), Cov(y)
    residual = y - C @ mu
    want_m = mu + cross @ torch.linalg.solve(V, residual)
    want_S = Sigma - cross @ torch.linalg.solve(V, cross.mT)
    want_S = 0.5 * (want_S + want_S.mT)
    if _close(m, want_m) and _close(S, want_S):
        return
    gain, gain_d = cross @ torch.linalg.inv(V), cross @ torch.linalg.inv(D)
    precision = torch.linalg.inv(Sigma) + C.mT @ torch.linalg.solve(D, C)
    info = torch.linalg.inv(precision)
    mistakes = {  # this example's update computed with the usual slips: label -> (m, S, message)
        "no update": (mu, Sigma, "you returned the predicted μ_t, Σ_t unchanged; condition them on y_t."),
        "no Sigma^-1 in m": (info @ (C.mT @ torch.linalg.solve(D, y) + mu), info,
                             "m_t = S_t (Cᵀ D⁻¹ y_t + Σ_t⁻¹ μ_t): the Σ_t⁻¹ in front of μ_t is missing."),
        "gain with D": (mu + gain_d @ residual, (torch.eye(dx, dtype=DTYPE) - gain_d @ C) @ Sigma,
                        "your gain uses D⁻¹ where it needs V_t⁻¹ = (D + C Σ_t Cᵀ)⁻¹: K = Σ_t Cᵀ V_t⁻¹."),
        "residual sign": (mu - gain @ residual, Sigma - gain @ V @ gain.mT,
                          "the mean moves away from y_t: the innovation is y_t - C μ_t, and m_t = μ_t + K (y_t - C μ_t)."),
        "cov sign": (mu + gain @ residual, Sigma + gain @ V @ gain.mT,
                     "your S_t is larger than Σ_t: observing y_t removes uncertainty, S_t = Σ_t - K V_t Kᵀ."),
        "no inverse": (info @ (C.mT @ torch.linalg.solve(D, y) + torch.linalg.solve(Sigma, mu)), precision,
                       "your S_t is the precision Σ_t⁻¹ + Cᵀ D⁻¹ C; the covariance is its inverse."),
    }
    for wrong_m, wrong_S, message in mistakes.values():
        if _close(m, wrong_m, 1e-7, 1e-5) and _close(S, wrong_S, 1e-7, 1e-5) and not _close(wrong_m, want_m):
            raise GradingError(f"update_step{label}: {message}")
    _expect_value(f"update_step{label}", m, want_m, "filtered mean m_t",
                  lambda: {key: (v[0], v[2]) for key, v in mistakes.items()}, hint=UPDATE_HINT)
    _expect_symmetric(f"update_step{label}", S, "filtered covariance S_t",
                      "If you use the gain form, S_t = Σ_t - K V_t Kᵀ is symmetric (or symmetrise: (S + Sᵀ)/2).")
    _expect_value(f"update_step{label}", S, want_S, "filtered covariance S_t",
                  lambda: {key: (v[1], v[2]) for key, v in mistakes.items()}, hint=UPDATE_HINT)


@_single_threaded
def check_update_step_values(update_step: Callable, seed: int = 0, sizes: Sequence[tuple[int, int]] = ((3, 2),)) -> None:
    """(m_t, S_t) equal the exact conditional p(s_t | y_t) of the joint Gaussian of (s_t, y_t), for each (dx, dy).

    (s, y) ~ N([μ; Cμ], [[Σ, ΣCᵀ], [CΣ, V]]) with V = CΣCᵀ + D, so s | y ~ N(μ + ΣCᵀ V⁻¹ (y - Cμ),
    Σ - ΣCᵀ V⁻¹ CΣ): the Schur complement of the joint, neither the slide's information form nor a gain.
    """
    for k, (dx, dy) in enumerate(sizes):
        _check_update_example(update_step, seed + 31 * k, dx, dy)


@_single_threaded
def check_update_step_batched(update_step: Callable, seed: int = 0, batch: int = 4) -> None:
    """With leading batch dimensions (B models), each model's (m_t, S_t) is its own."""
    args = random_moments(seed, state_dim=3, obs_dim=2, batch=(batch,))
    _batched("update_step", update_step, args, lambda b: tuple(a[b] for a in args), outputs=2)


# ------------------------------------------------------------------------------ log_predictive
PREDICTIVE_HINT = "log N(y_t | ŷ_t, V_t) = -½ (y_t - ŷ_t)ᵀ V_t⁻¹ (y_t - ŷ_t) - ½ log det V_t - (dy/2) log 2π."


def _log_predictive(log_predictive: Callable, mu, Sigma, y, C, D) -> torch.Tensor:
    return expect_tensor("log_predictive", _call("log_predictive", log_predictive, mu, Sigma, y, C, D))


@_single_threaded
def check_log_predictive_shape(log_predictive: Callable, seed: int = 0) -> None:
    """log_predictive returns a scalar tensor for one model."""
    value = _log_predictive(log_predictive, *random_moments(seed, 3, 2))
    if value.numel() == 1 and value.dim() > 0:
        raise GradingError(
            f"log_predictive returned shape {tuple(value.shape)}; expected a scalar, shape (). Reduce the "
            "quadratic form to a number (e.g. squeeze the (1, 1) result of r.mT @ V⁻¹ @ r)."
        )
    expect_shape("log_predictive", value, (), "() for one model")
    expect_finite("log_predictive", value)


def _check_log_predictive_example(log_predictive: Callable, seed: int, dx: int, dy: int) -> None:
    """log_predictive on the moments drawn from ``seed`` against MultivariateNormal; name a recognised mistake."""
    mu, Sigma, y, C, D = random_moments(seed, state_dim=dx, obs_dim=dy)
    value = _log_predictive(log_predictive, mu, Sigma, y, C, D)
    if value.numel() == 1 and value.dim() > 0:
        value = value.reshape(())
    u, V = C @ mu, D + C @ Sigma @ C.mT

    def log_normal(mean, cov):
        return torch.distributions.MultivariateNormal(mean, covariance_matrix=0.5 * (cov + cov.mT)).log_prob(y)

    want = log_normal(u, V)

    def mistakes() -> dict[str, tuple[torch.Tensor, str]]:
        """This example's log-density computed with the usual slips: label -> (value, message)."""
        r = y - u
        quad, logdet, const = r @ torch.linalg.solve(V, r), torch.logdet(V), 0.5 * dy * LOG_2PI
        out = {
            "no 2pi": (want + const, f"off by the constant (dy/2) log 2π = {const:.4g}: missing the log 2π term?"),
            "2pi sign": (want + 2 * const, "the log 2π term has the wrong sign: it is -(dy/2) log 2π."),
            "logdet no half": (want - 0.5 * logdet, "the log-determinant needs its ½: -½ log det V_t."),
            "quad no half": (want - 0.5 * quad, "the quadratic term needs its ½: -½ (y_t - ŷ_t)ᵀ V_t⁻¹ (y_t - ŷ_t)."),
            "no half": (want - 0.5 * quad - 0.5 * logdet, "both the quadratic term and the log-determinant need a ½."),
            "V = D": (log_normal(u, D), "you used D as the covariance of y_t; the predictive covariance is "
                                        "V_t = D + C Σ_t Cᵀ (the state's uncertainty adds to the noise)."),
            "density": (want.exp(), "you returned the density p(y_t | Y_{1:t-1}); return its logarithm."),
            "negative": (-want, "you returned -log p(y_t | Y_{1:t-1}) (a loss); return the log-density itself."),
            "det not logdet": (want + 0.5 * logdet - 0.5 * torch.det(V),
                               "you used det V_t where the log-determinant belongs: -½ log det V_t (torch.logdet)."),
        }
        if dx == dy:  # square C: the state's moments have the shape of y's
            out["V = Sigma"] = (log_normal(u, Sigma), "you used Σ_t as the covariance of y_t; use the predictive "
                                                      "covariance of y_t, V_t = D + C Σ_t Cᵀ, not the state's Σ_t.")
            out["mean mu"] = (log_normal(mu, V), "you compared y_t with μ_t; the predicted observation is ŷ_t = C μ_t.")
            out["no D, Sigma"] = (log_normal(u, Sigma + D), "you used D + Σ_t; the predictive covariance is "
                                                            "V_t = D + C Σ_t Cᵀ.")
        if dx >= dy:
            out["no D"] = (log_normal(u, C @ Sigma @ C.mT), "V_t = D + C Σ_t Cᵀ: the observation noise D is missing.")
        return out

    _expect_value(f"log_predictive (dx = {dx}, dy = {dy})", value, want, "log p(y_t | Y_{1:t-1})", mistakes,
                  hint=PREDICTIVE_HINT)


@_single_threaded
def check_log_predictive_values(log_predictive: Callable, seed: int = 0,
                                sizes: Sequence[tuple[int, int]] = ((2, 2), (3, 2))) -> None:
    """log N(y_t | C μ_t, D + C Σ_t Cᵀ) (by ``torch.distributions.MultivariateNormal``), for each (dx, dy)."""
    for k, (dx, dy) in enumerate(sizes):
        _check_log_predictive_example(log_predictive, seed + 43 * k, dx, dy)


@_single_threaded
def check_log_predictive_batched(log_predictive: Callable, seed: int = 0, batch: int = 4) -> None:
    """With leading batch dimensions (B models), one log-density per model, (B,)."""
    args = random_moments(seed, state_dim=3, obs_dim=2, batch=(batch,))
    _batched("log_predictive", log_predictive, args, lambda b: tuple(a[b] for a in args), outputs=1)


# ------------------------------------------------------------------------------ kalman_log_likelihood
LIKELIHOOD_HINT = (
    "For t = 1..T: predict (μ_t, Σ_t) from (m_{t-1}, S_{t-1}), add log p(y_t | Y_{1:t-1}) computed from the "
    "predicted μ_t, Σ_t, then update to (m_t, S_t); start from (m_0, S_0). If the checks of predict_step, "
    "update_step or log_predictive fail, fix those first."
)
LIKELIHOOD_MISTAKES = {
    "filtered_innovation": "you evaluated p(y_t | Y_{1:t-1}) with the filtered m_{t-1}, S_{t-1}; it needs the "
                           "predicted μ_t, Σ_t (the innovation is y_t - C μ_t): predict first, then score y_t.",
    "update_then_predict": "y_1 is scored against p(s_0) without a prediction step. Every y_t, y_1 included, "
                           "comes after a predict step s_{t-1} -> s_t: predict, score y_t, then update.",
    "no_update": "you never condition on y_t (update_step), so every y_t is predicted from the prior alone.",
    "no_predict": "you never call predict_step: the state must move from s_{t-1} to s_t (E_t, F_t) "
                  "before y_t is scored.",
    "mean": "you averaged the per-step terms; log p(Y_{1:T}) = Σ_t log p(y_t | Y_{1:t-1}) is their sum.",
    "last": "you returned only the last term log p(y_T | Y_{1:T-1}); sum the terms of all t.",
    "skip_first": "the term of y_1 is missing from the sum (t runs from 1 to T).",
    "prior_y1": "y_1 was scored with p(s_0) = N(m_0, S_0) itself; y_1 comes after one predict step: "
                "log p(y_1) = log N(y_1 | C E m_0, D + C (F + E S_0 Eᵀ) Cᵀ). Predict, score y_t, then update.",
}
"""What each recognised mistake of the filter's loop is told (the hidden checks recognise more of them)."""


def _no_2pi(T: int, dy: int) -> str:
    return f"off by the constant (T·dy/2) log 2π = {0.5 * T * dy * LOG_2PI:.4g}: missing the log 2π term?"


def _log_likelihood(kalman_log_likelihood: Callable, model: RandomModel) -> torch.Tensor:
    value = _call("kalman_log_likelihood", kalman_log_likelihood, model.Y, model.m0, model.S0, model.E, model.F,
                  model.C, model.D)
    value = expect_tensor("kalman_log_likelihood", value)
    if value.numel() == 1:
        value = value.reshape(())
    return expect_shape("kalman_log_likelihood", value, (), "(): one number, log p(Y_{1:T})")


@_single_threaded
def check_kalman_log_likelihood_one_step(kalman_log_likelihood: Callable, seed: int = 0) -> None:
    """T = 1: log p(y_1) = log N(y_1 | C E m_0, D + C (F + E S_0 Eᵀ) Cᵀ) (y_1 comes after one predict step)."""
    model = random_model(seed, 3, 2, num_steps=1)
    value = _log_likelihood(kalman_log_likelihood, model)
    m0, S0, E, F, C, D, y1 = model.m0, model.S0, model.E, model.F, model.C, model.D, model.Y[0]

    def log_normal(mean, cov):
        return torch.distributions.MultivariateNormal(mean, covariance_matrix=0.5 * (cov + cov.mT)).log_prob(y1)

    want = log_normal(C @ E @ m0, D + C @ (F + E @ S0 @ E.mT) @ C.mT)
    _expect_value("kalman_log_likelihood (T = 1)", value, want, "log p(y_1)", lambda: {
        "prior_y1": (log_normal(C @ m0, D + C @ S0 @ C.mT), LIKELIHOOD_MISTAKES["prior_y1"]),
        "no 2pi": (want + 0.5 * C.shape[-2] * LOG_2PI, _no_2pi(1, C.shape[-2])),
    }, hint="log p(y_1) = log N(y_1 | C E m_0, D + C (F + E S_0 Eᵀ) Cᵀ). " + LIKELIHOOD_HINT)


@_single_threaded
def check_kalman_log_likelihood_values(kalman_log_likelihood: Callable, seed: int = 0, state_dim: int = 2,
                                       obs_dim: int = 2, num_steps: int = 12) -> None:
    """On a random walk (E = I), equals the exact log-density of all T observations stacked, N(vec Y | mean, cov).

    With E = I the state is s_t = s_0 + w_1 + ... + w_t, so every y_t has mean C m_0 and
    Cov(y_t, y_u) = C (S_0 + min(t, u) F) Cᵀ + [t = u] D: the joint density needs no recursion.
    """
    model = random_model(seed, state_dim, obs_dim, num_steps, random_walk=True)
    value = _log_likelihood(kalman_log_likelihood, model)
    T, dy, C = num_steps, obs_dim, model.C
    t = torch.arange(1, T + 1, dtype=DTYPE)
    elapsed = torch.minimum(t[:, None], t[None, :])  # min(t, u): (T, T)
    blocks = (C @ model.S0 @ C.mT + elapsed[..., None, None] * (C @ model.F @ C.mT)
              + torch.eye(T, dtype=DTYPE)[..., None, None] * model.D)  # Cov(y_t, y_u): (T, T, dy, dy)
    cov = blocks.permute(0, 2, 1, 3).reshape(T * dy, T * dy)
    mean = (C @ model.m0).repeat(T)

    def log_density(steps: int) -> torch.Tensor:
        """log p(y_1, ..., y_steps): the leading block of the joint."""
        n = steps * dy
        if n == 0:
            return torch.zeros((), dtype=DTYPE)
        return torch.distributions.MultivariateNormal(mean[:n], covariance_matrix=cov[:n, :n]).log_prob(
            model.Y[:steps].reshape(-1))

    want = log_density(T)

    def mistakes() -> dict[str, tuple[torch.Tensor, str]]:
        index = torch.arange(T)
        marginals = torch.distributions.MultivariateNormal(mean[:dy].expand(T, dy), blocks[index, index]).log_prob(model.Y)
        return {
            "mean": (want / T, LIKELIHOOD_MISTAKES["mean"]),
            "last": (want - log_density(T - 1), LIKELIHOOD_MISTAKES["last"]),
            "skip_first": (want - log_density(1), LIKELIHOOD_MISTAKES["skip_first"]),
            "no_update": (marginals.sum(), LIKELIHOOD_MISTAKES["no_update"]),
            "no 2pi": (want + 0.5 * T * dy * LOG_2PI, _no_2pi(T, dy)),
        }

    _expect_value(f"kalman_log_likelihood (a random walk, T = {T})", value, want, "log p(Y_{1:T})", mistakes,
                  hint=LIKELIHOOD_HINT)


@_single_threaded
def gradients_wrt_F_and_D(log_likelihood: Callable, model: RandomModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Autograd's gradient of ``log_likelihood(Y, m0, S0, E, F, C, D)`` with respect to F and D on ``model``;
    a result without gradient (cut off from autograd) is a GradingError that says so."""
    F = model.F.clone().requires_grad_(True)
    D = model.D.clone().requires_grad_(True)
    value = log_likelihood(model.Y, model.m0, model.S0, model.E, F, model.C, D)
    if not isinstance(value, torch.Tensor) or not value.requires_grad:
        raise GradingError(
            "kalman_log_likelihood: the result carries no gradient with respect to F and D. Keep the "
            "computation in torch (no .item(), .numpy(), float(...) or .detach() inside), so that "
            "fit can differentiate it."
        )
    gF, gD = torch.autograd.grad(value.sum(), (F, D), allow_unused=True)
    if gF is None or gD is None:
        raise GradingError("kalman_log_likelihood: the result does not depend on F or D through autograd.")
    return gF, gD


def check_kalman_log_likelihood_gradient(kalman_log_likelihood: Callable, seed: int = 0) -> None:
    """Differentiable: autograd's gradient with respect to F and D agrees with finite differences of the function.

    Along a random symmetric direction Δ, (f(F + hΔ) - f(F - hΔ)) / 2h ≈ ⟨∇_F f, Δ⟩, and the same for D:
    a part of the computation cut off from autograd (``.item()``, ``float(...)``, ``.detach()``) breaks it.
    """
    model = random_model(seed, 2, 1, num_steps=10)
    gF, gD = gradients_wrt_F_and_D(lambda *a: _call("kalman_log_likelihood", kalman_log_likelihood, *a), model)
    gen, h = _generator(70_000 + seed), 1e-5
    for name, gradient in (("F", gF), ("D", gD)):
        direction = torch.randn(gradient.shape, generator=gen, dtype=DTYPE)
        direction = 0.5 * (direction + direction.mT)

        def at(step: float, name=name, direction=direction) -> float:
            moved = {"F": model.F, "D": model.D}
            moved[name] = moved[name] + step * direction
            with torch.no_grad():
                result = _call("kalman_log_likelihood", kalman_log_likelihood, model.Y, model.m0, model.S0, model.E,
                               moved["F"], model.C, moved["D"])
            return float(expect_tensor("kalman_log_likelihood", result).sum())

        numeric = (at(h) - at(-h)) / (2 * h)
        autograd = float((gradient * direction).sum())
        if abs(numeric - autograd) > 1e-5 * max(1.0, abs(numeric)):
            raise GradingError(
                f"kalman_log_likelihood: autograd's gradient with respect to {name} disagrees with finite "
                f"differences of your function (along a random direction: {autograd:.6g} by autograd, "
                f"{numeric:.6g} by finite differences). Part of the computation is cut off from autograd: no "
                ".item(), float(...), .detach(), .numpy() or torch.tensor(...) of intermediate results."
            )


# ------------------------------------------------------------------------------ fit
FIT_HINT = (
    "Each step: optimizer.zero_grad(); value = log_likelihood(*params); (-value).backward(); optimizer.step(); "
    "record value. Adam minimises, so give it the negative log-likelihood."
)
FIT_MISTAKES = {
    "descent": "your log-likelihood goes DOWN: you ran gradient descent on it. Maximise it: minimise the "
               "negative log-likelihood, loss = -log_likelihood(*params).",
    "no_zero_grad": "you never zero the gradients, so backward() adds each step's gradient to the previous ones. "
                    "Call optimizer.zero_grad() (before backward) in every step.",
    "after_step": "your trace records the log-likelihood after each step; record the value computed before the "
                  "step (the one you backpropagate), so that trace[0] is the log-likelihood at initial_params.",
    "sgd": "you used plain gradient steps (SGD); the assignment asks for torch.optim.Adam(params, lr=learning_rate).",
}
"""What each recognised mistake of fit is told."""


def _quadratic_problem(seed: int):
    """A concave log-likelihood of two parameters a: (2,), b: () with its maximiser: (fn, [a0, b0], [a*, b*])."""
    gen = _generator(3_000 + seed)
    H = random_spd(2, gen, 0.5, 3.0)
    a_star = torch.randn(2, generator=gen, dtype=DTYPE)
    b_star = torch.randn((), generator=gen, dtype=DTYPE)

    def log_likelihood(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d = a - a_star
        return -(d @ H @ d) - 2.0 * (b - b_star) ** 2 + 1.0

    start = [a_star + torch.tensor([1.5, -1.0], dtype=DTYPE), b_star - 1.2]
    return log_likelihood, start, [a_star, b_star]


def _fit(fit: Callable, log_likelihood, initial_params, num_steps: int, learning_rate: float):
    start = [p.clone() for p in initial_params]
    result = _call("fit", fit, log_likelihood, start, num_steps, learning_rate)
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise GradingError(f"fit returned a {type(result).__name__}; expected a pair (params, trace).")
    params, trace = result
    if not isinstance(params, (tuple, list)) or len(params) != len(initial_params):
        raise GradingError(
            f"fit: params should be a list of {len(initial_params)} tensors (one per initial parameter), got a "
            f"{type(params).__name__}" + (f" of length {len(params)}" if isinstance(params, (tuple, list)) else "")
        )
    checked = []
    for k, (p, p0) in enumerate(zip(params, initial_params)):
        p = expect_shape(f"fit (params[{k}])", p, tuple(p0.shape), "the shape of initial_params[k]")
        expect_finite(f"fit (params[{k}])", p)
        checked.append(p.detach().to(DTYPE))
    trace = expect_tensor("fit (trace)", trace)
    if trace.dim() == 2 and trace.shape[-1] == 1:
        trace = trace.squeeze(-1)
    trace = expect_shape("fit (trace)", trace, (num_steps,), "(num_steps,): the log-likelihood before each step")
    return checked, trace.detach().to(DTYPE)


@_single_threaded
def check_fit_returns(fit: Callable, seed: int = 0) -> None:
    """fit returns (params: list like initial_params, trace: (num_steps,)), trace[0] = log-likelihood at the start."""
    log_likelihood, start, _ = _quadratic_problem(seed)
    params, trace = _fit(fit, log_likelihood, start, 5, 0.1)
    first = log_likelihood(*start)
    if not _close(trace[0], first):
        after = log_likelihood(*params)
        message = FIT_MISTAKES["after_step"] if _close(trace[-1], after) else (
            f"trace[0] = {float(trace[0]):.6g}, but the log-likelihood at initial_params is {float(first):.6g}: "
            "record the value before each step.")
        raise GradingError(f"fit: {message}")


def _expect_ascent(trace: torch.Tensor) -> None:
    """The trace must not end below its start; say whether the very first step already went down."""
    if float(trace[-1]) >= float(trace[0]):
        return
    if float(trace[1]) < float(trace[0]):
        raise GradingError(f"fit: {FIT_MISTAKES['descent']}")
    raise GradingError(
        f"fit: the log-likelihood rises at the first step but ends at {float(trace[-1]):.5g}, below its start "
        f"{float(trace[0]):.5g}: later steps overshoot. Do you zero the gradients in every step "
        "(optimizer.zero_grad())? Otherwise each backward() adds to the gradients of all earlier steps."
    )


@_single_threaded
def check_fit_climbs(fit: Callable, seed: int = 0) -> None:
    """On a concave quadratic, 300 steps of gradient ascent (learning_rate 0.05) reach its maximiser within 1e-3."""
    num_steps = 300
    log_likelihood, start, optimum = _quadratic_problem(seed)
    params, trace = _fit(fit, log_likelihood, start, num_steps, 0.05)
    _expect_ascent(trace)
    error = max(float((p - q).abs().max()) for p, q in zip(params, optimum))
    if error > 1e-3:  # Adam gets within 1e-6
        raise GradingError(
            f"fit: after {num_steps} steps (learning_rate 0.05) your parameters are {error:.3g} from the maximiser "
            "of a concave quadratic; Adam gets within 1e-6 of it. " + FIT_HINT
        )


@_single_threaded
def check_fit_first_step(fit: Callable, seed: int = 0, learning_rate: float = 0.1) -> None:
    """Adam's first step moves every parameter by learning_rate uphill: θ_1 = θ_0 + lr · sign(∇ log p(θ_0)).

    (Adam's first step divides the gradient by its own size: m̂_1 = g, v̂_1 = g², θ_1 = θ_0 - lr · g / (|g| + ε)
    for the loss -log p.)
    """
    log_likelihood, start, _ = _quadratic_problem(seed)
    params, _ = _fit(fit, log_likelihood, start, 1, learning_rate)
    probe = [p.clone().requires_grad_(True) for p in start]
    gradients = torch.autograd.grad(log_likelihood(*probe), probe)

    def moved(step: Callable[[torch.Tensor], torch.Tensor]) -> bool:
        return all(_close(p, p0 + step(g), 1e-9, 1e-7) for p, p0, g in zip(params, start, gradients))

    if moved(lambda g: learning_rate * g.sign()):
        return
    if moved(lambda g: -learning_rate * g.sign()):
        raise GradingError(f"fit: {FIT_MISTAKES['descent']}")
    if moved(lambda g: learning_rate * g):
        raise GradingError(f"fit: {FIT_MISTAKES['sgd']}")
    if moved(torch.zeros_like):
        raise GradingError(
            "fit: after one step the parameters have not moved. Call optimizer.step() after backward(), and return "
            "the tensors the optimizer updated (detached)."
        )
    raise GradingError(
        f"fit: Adam's first step moves every parameter by learning_rate = {learning_rate} uphill, "
        "θ_1 = θ_0 + lr · sign(∇ log p(θ_0)) (Adam divides its first gradient by its own size); after one step your "
        f"parameters moved by {fmt(params[0] - start[0])} (params[0]). " + FIT_HINT
    )
