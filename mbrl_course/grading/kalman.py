"""Checks for Assignment 2, "Kalman filtering and learning by marginal likelihood" (``solutions/02-kalman``).

The student implements the slide's Kalman filter in its notation, p(s_0) = N(m_0, S_0),
p(s_t | s_{t-1}) = N(E_t s_{t-1}, F_t), p(y_t | s_t) = N(C s_t, D):

- ``predict_step(m, S, E, F) -> (mu, Sigma)``: p(s_t | Y_{1:t-1}) = N(μ_t, Σ_t), μ_t = E_t m_{t-1},
  Σ_t = F_t + E_t S_{t-1} E_tᵀ;
- ``update_step(mu, Sigma, y, C, D) -> (m, S)``: p(s_t | Y_{1:t}) = N(m_t, S_t), in the slide's
  information form or the equivalent gain form;
- ``log_predictive(mu, Sigma, y, C, D) -> (...)``: log p(y_t | Y_{1:t-1}) = log N(y_t | u_t, V_t),
  u_t = C μ_t, V_t = D + C Σ_t Cᵀ;
- ``kalman_log_likelihood(Y, m0, S0, E, F, C, D) -> ()``: log p(Y_{1:T}) = Σ_t log p(y_t | Y_{1:t-1});
- ``fit(log_likelihood, initial_params, num_steps, learning_rate) -> (params, trace)``: gradient
  ascent on a log-likelihood with ``torch.optim.Adam`` and autograd.

Each ``check_*`` function runs the student's function on randomised models drawn from a fixed
seed (float64) and compares it with exact oracles that share no code with the recursion (Gaussian
conditioning of the joint of (s_t, y_t); the joint Gaussian density of the stacked observations
Y_{1:T}; ``torch.distributions.MultivariateNormal``) and with the reference implementation in
:mod:`mbrl_course.filters`. A check raises :class:`~mbrl_course.grading.report.GradingError` with a
message that names the mistake where it recognises one (a missing F_t, E_t S_{t-1} without E_tᵀ, a
missing log 2π, the filtered instead of the predicted moments, gradient descent instead of ascent,
gradients that are never zeroed, ...). Any numerically equivalent correct implementation passes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mbrl_course.grading.checks import expect_finite, expect_independent, expect_shape, expect_tensor, fmt
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
    """E: (*batch, dx, dx), non-symmetric, spectral radius 0.95"""
    F: torch.Tensor
    """F: (*batch, dx, dx)"""
    C: torch.Tensor
    """C: (*batch, dy, dx)"""
    D: torch.Tensor
    """D: (*batch, dy, dy)"""
    Y: torch.Tensor
    """observations y_1..y_T sampled from the model: (*batch, T, dy)"""


def random_model(seed: int, state_dim: int = 3, obs_dim: int = 2, num_steps: int = 10,
                 batch: Sequence[int] = ()) -> RandomModel:
    """Draw a model (and T observations from it) from ``seed``."""
    gen = _generator(1_000 + seed)
    batch = tuple(batch)
    A = torch.randn(*batch, state_dim, state_dim, generator=gen, dtype=DTYPE)
    radius = torch.linalg.eigvals(A).abs().amax(-1)[..., None, None].clamp_min(1e-3)
    E = 0.95 * A / radius
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


# ------------------------------------------------------------------------------ exact oracles
def condition_oracle(mu: torch.Tensor, Sigma: torch.Tensor, y: torch.Tensor, C: torch.Tensor,
                     D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """p(s | y) from the joint Gaussian of (s, y), by the Schur complement (neither the slide's form nor a gain).

    (s, y) ~ N([μ; Cμ], [[Σ, ΣCᵀ], [CΣ, CΣCᵀ + D]]) and s | y ~ N(μ + Σ_sy Σ_yy⁻¹ (y - Cμ),
    Σ - Σ_sy Σ_yy⁻¹ Σ_ys), computed from the full joint covariance with ``torch.linalg.solve``.
    """
    dx = mu.shape[-1]
    joint = torch.cat([torch.cat([Sigma, Sigma @ C.mT], -1), torch.cat([C @ Sigma, C @ Sigma @ C.mT + D], -1)], -2)
    s_y, y_y = joint[..., :dx, dx:], joint[..., dx:, dx:]
    residual = y - (C @ mu.unsqueeze(-1)).squeeze(-1)
    mean = mu + (s_y @ torch.linalg.solve(y_y, residual.unsqueeze(-1))).squeeze(-1)
    cov = joint[..., :dx, :dx] - s_y @ torch.linalg.solve(y_y, s_y.mT)
    return mean, 0.5 * (cov + cov.mT)


def log_predictive_oracle(mu, Sigma, y, C, D) -> torch.Tensor:
    """log N(y | C μ, D + C Σ Cᵀ) with ``torch.distributions.MultivariateNormal``: (...)."""
    V = D + C @ Sigma @ C.mT
    u = (C @ mu.unsqueeze(-1)).squeeze(-1)
    return torch.distributions.MultivariateNormal(u, covariance_matrix=0.5 * (V + V.mT), validate_args=False).log_prob(y)


def joint_moments(num_steps: int, m0, S0, E, F, C, D) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (T·dy,) and covariance (T·dy, T·dy) of the stacked observations [y_1; ...; y_T].

    From s_t = E s_{t-1} + w_t: E[s_t] = E^t m_0, P_t = Cov(s_t) = E P_{t-1} Eᵀ + F (P_0 = S_0) and
    Cov(s_u, s_t) = E^{u-t} P_t for u >= t; y_t = C s_t + v_t adds D on the diagonal blocks.
    For fixed (unbatched) E, F, C, D.
    """
    T, dy = num_steps, C.shape[-2]
    means, covs, powers = [], [], [torch.eye(E.shape[-1], dtype=E.dtype)]
    mean, cov = m0, S0
    for _ in range(T):
        mean, cov = E @ mean, E @ cov @ E.mT + F
        means.append(mean)
        covs.append(cov)
        powers.append(E @ powers[-1])
    index = torch.arange(T)
    lag = index[:, None] - index[None, :]  # u - t
    cross = torch.stack(powers)[lag.clamp_min(0)] @ torch.stack(covs)[None]  # Cov(s_u, s_t) where u >= t
    lower = C @ cross @ C.mT  # (T, T, dy, dy)
    blocks = torch.where((lag >= 0)[..., None, None], lower, lower.transpose(0, 1).mT)
    blocks = blocks + torch.eye(T, dtype=E.dtype)[..., None, None] * D
    cov_y = blocks.permute(0, 2, 1, 3).reshape(T * dy, T * dy)
    mean_y = (C @ torch.stack(means).unsqueeze(-1)).reshape(T * dy)
    return mean_y, 0.5 * (cov_y + cov_y.mT)


def joint_log_likelihood(Y: torch.Tensor, m0, S0, E, F, C, D) -> torch.Tensor:
    """The exact log p(Y_{1:T}) = log N(vec Y | mean, cov) of the stacked observations (no recursion): ()."""
    mean, cov = joint_moments(Y.shape[-2], m0, S0, E, F, C, D)
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(Y.reshape(-1))


# ------------------------------------------------------------------------------ helpers
def _call(name: str, fn: Callable, *args):
    """Call the student's function; ``NotImplementedError`` becomes a message (any other crash reaches the
    :class:`~mbrl_course.grading.report.Report`, which names the student's line that raised)."""
    try:
        return fn(*args)
    except GradingError:
        raise
    except NotImplementedError:
        raise GradingError(f"{name}: not implemented yet: replace `raise NotImplementedError()` with your code") from None


def _pair(name: str, result, first: str, second: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise GradingError(f"{name} returned a {type(result).__name__}; expected a pair ({first}, {second}).")
    return expect_tensor(f"{name} ({first})", result[0]), expect_tensor(f"{name} ({second})", result[1])


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
def check_predict_step_mean(predict_step: Callable, seed: int = 0) -> None:
    """μ_t = E_t m_{t-1}."""
    model = random_model(seed, state_dim=3)
    m, E = model.m0, model.E
    mu, _ = _predict(predict_step, m, model.S0, E, model.F)
    _expect_value("predict_step", mu, E @ m, "predicted mean μ_t", lambda: {
        "forgot E": (m, "you returned m_{t-1} itself; the state moves: μ_t = E_t m_{t-1}."),
        "transposed": (E.mT @ m, "you computed E_tᵀ m_{t-1}; the mean is μ_t = E_t m_{t-1}."),
    }, hint=PREDICT_HINT)


def _predict_cov_mistakes(S, E, F) -> dict[str, tuple[torch.Tensor, str]]:
    return {
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


@_single_threaded
def check_predict_step_cov(predict_step: Callable, seed: int = 0) -> None:
    """Σ_t = F_t + E_t S_{t-1} E_tᵀ, symmetric."""
    model = random_model(seed, state_dim=3)
    S, E, F = model.S0, model.E, model.F
    _, Sigma = _predict(predict_step, model.m0, S, E, F)
    Sigma = expect_shape("predict_step (Sigma)", Sigma, (3, 3), "(dx, dx)")
    want = F + E @ S @ E.mT
    mistakes = _predict_cov_mistakes(S, E, F)
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


@_single_threaded
def check_predict_step_reference(predict_step: Callable, seed: int = 0, runs: int = 4) -> None:
    """Equals ``mbrl_course.filters.predict_step`` on random models of several sizes (dx = 1..4)."""
    from mbrl_course.filters import predict_step as reference

    for run in range(runs):
        dx = 1 + (seed + run) % 4
        model = random_model(seed + 17 * run, state_dim=dx)
        mu, Sigma = _predict(predict_step, model.m0, model.S0, model.E, model.F)
        want_mu, want_Sigma = reference(model.m0, model.S0, model.E, model.F)
        hint = f"(a random model with dx = {dx}) " + PREDICT_HINT
        _expect_value("predict_step", mu, want_mu, "predicted mean μ_t", hint=hint)
        _expect_value("predict_step", Sigma, want_Sigma, "predicted covariance Σ_t",
                      functools.partial(_predict_cov_mistakes, model.S0, model.E, model.F), hint=hint)


# ------------------------------------------------------------------------------ update_step
UPDATE_HINT = ("S_t = (Σ_t⁻¹ + Cᵀ D⁻¹ C)⁻¹, m_t = S_t (Cᵀ D⁻¹ y_t + Σ_t⁻¹ μ_t); or, equivalently, "
               "K = Σ_t Cᵀ V_t⁻¹ with V_t = D + C Σ_t Cᵀ, m_t = μ_t + K (y_t - C μ_t), S_t = Σ_t - K V_t Kᵀ.")


def _update(update_step: Callable, mu, Sigma, y, C, D) -> tuple[torch.Tensor, torch.Tensor]:
    return _pair("update_step", _call("update_step", update_step, mu, Sigma, y, C, D), "m", "S")


def _update_mistakes(mu, Sigma, y, C, D) -> dict[str, tuple[torch.Tensor, torch.Tensor, str]]:
    """Recognised wrong updates: label -> (m, S, message)."""
    col = lambda v: v.unsqueeze(-1)  # noqa: E731
    V = D + C @ Sigma @ C.mT
    residual = y - (C @ col(mu)).squeeze(-1)
    gain = Sigma @ C.mT @ torch.linalg.inv(V)
    info = torch.linalg.inv(torch.linalg.inv(Sigma) + C.mT @ torch.linalg.solve(D, C))
    gain_d = Sigma @ C.mT @ torch.linalg.inv(D)
    eye = torch.eye(mu.shape[-1], dtype=DTYPE)
    return {
        "no update": (mu, Sigma, "you returned the predicted μ_t, Σ_t unchanged; condition them on y_t."),
        "no Sigma^-1 in m": (
            (info @ (C.mT @ torch.linalg.solve(D, col(y)) + col(mu))).squeeze(-1), info,
            "m_t = S_t (Cᵀ D⁻¹ y_t + Σ_t⁻¹ μ_t): the Σ_t⁻¹ in front of μ_t is missing."),
        "gain with D": (
            mu + (gain_d @ col(residual)).squeeze(-1), (eye - gain_d @ C) @ Sigma,
            "your gain uses D⁻¹ where it needs V_t⁻¹ = (D + C Σ_t Cᵀ)⁻¹: K = Σ_t Cᵀ V_t⁻¹."),
        "residual sign": (
            mu - (gain @ col(residual)).squeeze(-1), Sigma - gain @ V @ gain.mT,
            "the mean moves away from y_t: the innovation is y_t - C μ_t, and m_t = μ_t + K (y_t - C μ_t)."),
        "cov sign": (
            mu + (gain @ col(residual)).squeeze(-1), Sigma + gain @ V @ gain.mT,
            "your S_t is larger than Σ_t: observing y_t removes uncertainty, S_t = Σ_t - K V_t Kᵀ."),
        "no inverse": (
            (info @ (C.mT @ torch.linalg.solve(D, col(y)) + torch.linalg.solve(Sigma, col(mu)))).squeeze(-1),
            torch.linalg.inv(Sigma) + C.mT @ torch.linalg.solve(D, C),
            "your S_t is the precision Σ_t⁻¹ + Cᵀ D⁻¹ C; the covariance is its inverse."),
    }


@_single_threaded
def check_update_step_shapes(update_step: Callable, seed: int = 0) -> None:
    """update_step returns (m_t: (dx,), S_t: (dx, dx)) for dy != dx."""
    mu, Sigma, y, C, D = random_moments(seed, state_dim=3, obs_dim=2)
    m, S = _update(update_step, mu, Sigma, y, C, D)
    expect_shape("update_step (m)", m, (3,), "(dx,)")
    expect_shape("update_step (S)", S, (3, 3), "(dx, dx)")


def _check_update(update_step: Callable, mu, Sigma, y, C, D, label: str = "") -> None:
    m, S = _update(update_step, mu, Sigma, y, C, D)
    want_m, want_S = condition_oracle(mu, Sigma, y, C, D)
    m = expect_shape("update_step (m)", m, tuple(want_m.shape), "(dx,)")
    S = expect_shape("update_step (S)", S, tuple(want_S.shape), "(dx, dx)")
    correct = _close(m, want_m) and _close(S, want_S)
    mistakes = {} if correct else _update_mistakes(mu, Sigma, y, C, D)
    for wrong_m, wrong_S, message in mistakes.values():
        if _close(m, wrong_m, 1e-7, 1e-5) and _close(S, wrong_S, 1e-7, 1e-5) and not _close(wrong_m, want_m):
            raise GradingError(f"update_step{label}: {message}")
    _expect_value(f"update_step{label}", m, want_m, "filtered mean m_t",
                  lambda: {k: (v[0], v[2]) for k, v in mistakes.items()}, hint=UPDATE_HINT)
    _expect_symmetric(f"update_step{label}", S, "filtered covariance S_t",
                      "If you use the gain form, S_t = Σ_t - K V_t Kᵀ is symmetric (or symmetrise: (S + Sᵀ)/2).")
    _expect_value(f"update_step{label}", S, want_S, "filtered covariance S_t",
                  lambda: {k: (v[1], v[2]) for k, v in mistakes.items()}, hint=UPDATE_HINT)


@_single_threaded
def check_update_step_values(update_step: Callable, seed: int = 0) -> None:
    """(m_t, S_t) equal the exact conditional p(s_t | y_t) of the joint Gaussian of (s_t, y_t) (dx = 3, dy = 2)."""
    _check_update(update_step, *random_moments(seed, state_dim=3, obs_dim=2))


@_single_threaded
def check_update_step_models(update_step: Callable, seed: int = 0, runs: int = 4) -> None:
    """Exact on random models of several sizes (dy < dx, dy = dx, dy > dx, dy = 1) and equal to the reference."""
    from mbrl_course.filters import update_step as reference

    sizes = [(3, 1), (2, 2), (2, 4), (4, 3)]
    for run in range(runs):
        dx, dy = sizes[(seed + run) % len(sizes)]
        mu, Sigma, y, C, D = random_moments(seed + 31 * run, state_dim=dx, obs_dim=dy)
        _check_update(update_step, mu, Sigma, y, C, D, label=f" (a random model with dx = {dx}, dy = {dy})")
        m, S = _update(update_step, mu, Sigma, y, C, D)
        want_m, want_S, _ = reference(mu, Sigma, y, C, D)
        _expect_value("update_step", m, want_m, "filtered mean m_t (against mbrl_course.filters)", hint=UPDATE_HINT)
        _expect_value("update_step", S, want_S, "filtered covariance S_t (against mbrl_course.filters)",
                      hint=UPDATE_HINT)


@_single_threaded
def check_update_step_batched(update_step: Callable, seed: int = 0, batch: int = 4) -> None:
    """With leading batch dimensions (B models), each model's (m_t, S_t) is its own."""
    args = random_moments(seed, state_dim=3, obs_dim=2, batch=(batch,))
    _batched("update_step", update_step, args, lambda b: tuple(a[b] for a in args), outputs=2)


# ------------------------------------------------------------------------------ log_predictive
PREDICTIVE_HINT = "log N(y_t | u_t, V_t) = -½ (y_t - u_t)ᵀ V_t⁻¹ (y_t - u_t) - ½ log det V_t - (dy/2) log 2π."


def _log_normal(y, mean, cov) -> torch.Tensor:
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=0.5 * (cov + cov.mT)).log_prob(y)


def _predictive_mistakes(mu, Sigma, y, C, D) -> dict[str, tuple[torch.Tensor, str]]:
    dy = y.shape[-1]
    u = (C @ mu.unsqueeze(-1)).squeeze(-1)
    V = D + C @ Sigma @ C.mT
    correct = _log_normal(y, u, V)
    r = (y - u).unsqueeze(-1)
    quad = (r.mT @ torch.linalg.solve(V, r)).squeeze(-1).squeeze(-1)
    logdet = torch.logdet(V)
    const = 0.5 * dy * LOG_2PI
    out = {
        "no 2pi": (correct + const, f"off by the constant (dy/2) log 2π = {const:.4g}: missing the log 2π term?"),
        "2pi sign": (correct + 2 * const, "the log 2π term has the wrong sign: it is -(dy/2) log 2π."),
        "logdet no half": (correct - 0.5 * logdet, "the log-determinant needs its ½: -½ log det V_t."),
        "quad no half": (correct - 0.5 * quad, "the quadratic term needs its ½: -½ (y - u)ᵀ V⁻¹ (y - u)."),
        "no half": (correct - 0.5 * quad - 0.5 * logdet, "both the quadratic term and the log-determinant need a ½."),
        "V = D": (_log_normal(y, u, D), "you used D as the covariance of y_t; the predictive covariance is "
                                        "V_t = D + C Σ_t Cᵀ (the state's uncertainty adds to the noise)."),
        "density": (correct.exp(), "you returned the density p(y_t | Y_{1:t-1}); return its logarithm."),
        "negative": (-correct, "you returned -log p(y_t | Y_{1:t-1}) (a loss); return the log-density itself."),
        "det not logdet": (correct + 0.5 * logdet - 0.5 * torch.det(V),
                           "you used det V_t where the log-determinant belongs: -½ log det V_t (torch.logdet)."),
    }
    if C.shape[-1] == dy:  # square C: the state-space moments have the shape of y's
        out["V = Sigma"] = (_log_normal(y, u, Sigma), "you used Σ_t as the covariance of y_t; use the predictive "
                                                      "covariance of y_t, V_t = D + C Σ_t Cᵀ, not the state's Σ_t.")
        out["mean mu"] = (_log_normal(y, mu, V), "you compared y_t with μ_t; the predicted observation is u_t = C μ_t.")
        out["no D, Sigma"] = (_log_normal(y, u, Sigma + D), "you used D + Σ_t; the predictive covariance is "
                                                            "V_t = D + C Σ_t Cᵀ.")
    if C.shape[-1] >= dy:
        out["no D"] = (_log_normal(y, u, C @ Sigma @ C.mT), "V_t = D + C Σ_t Cᵀ: the observation noise D is missing.")
    return out


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


def _check_log_predictive(log_predictive: Callable, mu, Sigma, y, C, D, label: str = "") -> None:
    value = _log_predictive(log_predictive, mu, Sigma, y, C, D)
    want = log_predictive_oracle(mu, Sigma, y, C, D)
    if value.numel() == 1 and value.dim() > 0 and want.dim() == 0:
        value = value.reshape(())
    _expect_value(f"log_predictive{label}", value, want, "log p(y_t | Y_{1:t-1})",
                  lambda: _predictive_mistakes(mu, Sigma, y, C, D), hint=PREDICTIVE_HINT)


@_single_threaded
def check_log_predictive_values(log_predictive: Callable, seed: int = 0) -> None:
    """log N(y_t | C μ_t, D + C Σ_t Cᵀ) for a square C (dx = dy = 2) and for dx = 3, dy = 2."""
    _check_log_predictive(log_predictive, *random_moments(seed + 1, 2, 2), label=" (dx = dy = 2)")
    _check_log_predictive(log_predictive, *random_moments(seed, 3, 2), label=" (dx = 3, dy = 2)")


@_single_threaded
def check_log_predictive_models(log_predictive: Callable, seed: int = 0, runs: int = 4) -> None:
    """Exact on random models of several sizes, and equal to the reference's log p(y_t | Y_{1:t-1})."""
    from mbrl_course.filters import update_step as reference

    sizes = [(3, 1), (2, 2), (2, 4), (4, 3), (1, 1)]
    for run in range(runs):
        dx, dy = sizes[(seed + run) % len(sizes)]
        args = random_moments(seed + 43 * run, state_dim=dx, obs_dim=dy)
        _check_log_predictive(log_predictive, *args, label=f" (dx = {dx}, dy = {dy})")
        _, _, want = reference(*args)
        value = _log_predictive(log_predictive, *args).reshape(want.shape)
        _expect_value("log_predictive", value, want, "log p(y_t | Y_{1:t-1}) (against mbrl_course.filters)",
                      hint=PREDICTIVE_HINT)


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


def _variant_log_likelihood(Y, m0, S0, E, F, C, D, variant: str) -> torch.Tensor:
    """log p(Y_{1:T}) computed correctly (``variant="correct"``) or with one recognised mistake."""
    from mbrl_course.filters import predict_step, update_step

    m, S = m0, S0
    terms = []
    for t in range(Y.shape[-2]):
        y = Y[t]
        if variant == "update_then_predict":
            terms.append(log_predictive_oracle(m, S, y, C, D))
            m, S, _ = update_step(m, S, y, C, D)
            m, S = predict_step(m, S, E, F)
            continue
        mu, Sigma = (m, S) if variant == "no_predict" else predict_step(m, S, E, F)
        if variant == "filtered_innovation":
            terms.append(log_predictive_oracle(m, S, y, C, D))
        else:
            terms.append(log_predictive_oracle(mu, Sigma, y, C, D))
        if variant == "no_update":
            m, S = mu, Sigma
        else:
            m, S, _ = update_step(mu, Sigma, y, C, D)
    terms = torch.stack(terms)
    return {"mean": terms.mean(), "last": terms[-1], "skip_first": terms[1:].sum()}.get(variant, terms.sum())


def _likelihood_mistakes(model: RandomModel) -> dict[str, tuple[torch.Tensor, str]]:
    args = (model.Y, model.m0, model.S0, model.E, model.F, model.C, model.D)
    T, dy = model.Y.shape[-2:]
    correct = _variant_log_likelihood(*args, "correct")
    const = 0.5 * T * dy * LOG_2PI
    messages = {
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
    }
    if T == 1:  # scoring y_1 with p(s_0) is the same mistake in both loops
        messages["filtered_innovation"] = messages["update_then_predict"] = (
            "y_1 was scored with p(s_0) = N(m_0, S_0) itself; y_1 comes after one predict step: "
            "log p(y_1) = log N(y_1 | C E m_0, D + C (F + E S_0 Eᵀ) Cᵀ). Predict, score y_t, then update.")
    out = {name: (_variant_log_likelihood(*args, name), message) for name, message in messages.items()}
    out["no 2pi"] = (correct + const, f"off by the constant (T·dy/2) log 2π = {const:.4g}: missing the log 2π term?")
    return out


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
    want = joint_log_likelihood(model.Y, model.m0, model.S0, model.E, model.F, model.C, model.D)
    _expect_value("kalman_log_likelihood (T = 1)", value, want, "log p(y_1)", lambda: _likelihood_mistakes(model),
                  hint="log p(y_1) = log N(y_1 | C E m_0, D + C (F + E S_0 Eᵀ) Cᵀ). " + LIKELIHOOD_HINT)


@_single_threaded
def check_kalman_log_likelihood_values(kalman_log_likelihood: Callable, seed: int = 0, num_steps: int = 12) -> None:
    """Equals the exact log-density of the stacked observations N(vec Y | mean, cov) (dx = 3, dy = 2)."""
    model = random_model(seed, 3, 2, num_steps=num_steps)
    value = _log_likelihood(kalman_log_likelihood, model)
    want = joint_log_likelihood(model.Y, model.m0, model.S0, model.E, model.F, model.C, model.D)
    _expect_value("kalman_log_likelihood", value, want, f"log p(Y_{{1:T}}) (T = {num_steps})",
                  lambda: _likelihood_mistakes(model), hint=LIKELIHOOD_HINT)


@_single_threaded
def check_kalman_log_likelihood_models(kalman_log_likelihood: Callable, seed: int = 0, runs: int = 4) -> None:
    """Exact and equal to ``mbrl_course.filters.kalman_filter`` on random models of several sizes and lengths."""
    from mbrl_course.filters import kalman_filter

    sizes = [(2, 1, 25), (4, 2, 8), (1, 1, 30), (3, 3, 15), (2, 3, 5)]
    for run in range(runs):
        dx, dy, T = sizes[(seed + run) % len(sizes)]
        model = random_model(seed + 59 * run, dx, dy, num_steps=T)
        value = _log_likelihood(kalman_log_likelihood, model)
        want = joint_log_likelihood(model.Y, model.m0, model.S0, model.E, model.F, model.C, model.D)
        label = f" (dx = {dx}, dy = {dy}, T = {T})"
        _expect_value("kalman_log_likelihood" + label, value, want, "log p(Y_{1:T})",
                      functools.partial(_likelihood_mistakes, model), hint=LIKELIHOOD_HINT)
        reference = kalman_filter(model.Y, model.m0, model.S0, model.E, model.F, model.C, model.D).log_likelihood
        _expect_value("kalman_log_likelihood" + label, value, reference,
                      "log p(Y_{1:T}) (against mbrl_course.filters.kalman_filter)", hint=LIKELIHOOD_HINT)


@_single_threaded
def check_kalman_log_likelihood_gradient(kalman_log_likelihood: Callable, seed: int = 0) -> None:
    """Differentiable: autograd's gradient with respect to F and D equals that of the exact log-density."""
    model = random_model(seed, 2, 1, num_steps=10)

    def gradients(fn):
        F = model.F.clone().requires_grad_(True)
        D = model.D.clone().requires_grad_(True)
        value = fn(model.Y, model.m0, model.S0, model.E, F, model.C, D)
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

    got = gradients(lambda *a: _call("kalman_log_likelihood", kalman_log_likelihood, *a))
    want = gradients(joint_log_likelihood)
    for name, g, w in zip(("F", "D"), got, want):  # gradients in a symmetric matrix: compare their symmetric parts
        g, w = 0.5 * (g + g.mT), 0.5 * (w + w.mT)
        if not _close(g, w, 1e-7, 1e-5):
            raise GradingError(
                f"kalman_log_likelihood: the gradient with respect to {name} differs from that of the exact "
                f"log-likelihood:{_largest_difference(g, w)}."
            )


# ------------------------------------------------------------------------------ fit
FIT_HINT = (
    "Each step: optimizer.zero_grad(); value = log_likelihood(*params); (-value).backward(); optimizer.step(); "
    "record value. Adam minimises, so give it the negative log-likelihood."
)


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


def reference_fit(log_likelihood: Callable, initial_params: Sequence[torch.Tensor], num_steps: int,
                  learning_rate: float, variant: str = "correct") -> tuple[list[torch.Tensor], torch.Tensor]:
    """Gradient ascent with Adam (the assignment's recipe), or one of its recognised mistakes."""
    params = [p.detach().clone().requires_grad_(True) for p in initial_params]
    optimizer = (torch.optim.SGD if variant == "sgd" else torch.optim.Adam)(params, lr=learning_rate)
    trace = []
    for _ in range(num_steps):
        if variant != "no_zero_grad":
            optimizer.zero_grad()
        value = log_likelihood(*params)
        (value if variant == "descent" else -value).backward()
        optimizer.step()
        if variant == "after_step":
            with torch.no_grad():
                value = log_likelihood(*params)
        trace.append(value.detach())
    return [p.detach() for p in params], torch.stack(trace)


FIT_MISTAKES = {
    "descent": "your log-likelihood goes DOWN: you ran gradient descent on it. Maximise it: minimise the "
               "negative log-likelihood, loss = -log_likelihood(*params).",
    "no_zero_grad": "you never zero the gradients, so backward() adds each step's gradient to the previous ones. "
                    "Call optimizer.zero_grad() (before backward) in every step.",
    "after_step": "your trace records the log-likelihood after each step; record the value computed before the "
                  "step (the one you backpropagate), so that trace[0] is the log-likelihood at initial_params.",
    "sgd": "you used plain gradient steps (SGD); the assignment asks for torch.optim.Adam(params, lr=learning_rate).",
}


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


def _guarded(log_likelihood: Callable, names: str) -> Callable:
    """``log_likelihood`` that turns a failure at the student's parameters into a message naming them."""

    def guarded(*params):
        try:
            return log_likelihood(*params)
        except Exception as err:  # noqa: BLE001 (e.g. a covariance that is no longer positive definite)
            values = ", ".join(f"{float(p):.4g}" for p in params)
            raise GradingError(
                f"fit: the log-likelihood cannot be evaluated at the parameters your fit reached, ({names}) = "
                f"({values}) ({type(err).__name__}): they ran off to extreme values. Are you climbing the "
                "log-likelihood (minimise -log_likelihood) and zeroing the gradients in every step?"
            ) from None

    return guarded


@_single_threaded
def check_fit_climbs(fit: Callable, seed: int = 0, num_steps: int = 300) -> None:
    """On a concave quadratic, gradient ascent reaches its maximiser, as the reference Adam does."""
    log_likelihood, start, optimum = _quadratic_problem(seed)
    params, trace = _fit(fit, log_likelihood, start, num_steps, 0.05)
    _expect_ascent(trace)
    ref_params, _ = reference_fit(log_likelihood, start, num_steps, 0.05)
    ref_error = max(float((p - q).abs().max()) for p, q in zip(ref_params, optimum))
    error = max(float((p - q).abs().max()) for p, q in zip(params, optimum))
    if error > 3 * ref_error + 1e-3:
        raise GradingError(
            f"fit: after {num_steps} steps (learning_rate 0.05) your parameters are {error:.3g} from the maximiser "
            f"of a concave quadratic; Adam gets within {ref_error:.3g}. " + FIT_HINT
        )


@_single_threaded
def check_fit_adam_steps(fit: Callable, seed: int = 0, num_steps: int = 6) -> None:
    """Follows the reference Adam ascent step by step: same trace and same parameters."""
    log_likelihood, start, _ = _quadratic_problem(seed)
    params, trace = _fit(fit, log_likelihood, start, num_steps, 0.3)
    want_params, want_trace = reference_fit(log_likelihood, start, num_steps, 0.3)
    same = _close(trace, want_trace, 1e-9, 1e-7) and all(_close(p, q, 1e-9, 1e-7) for p, q in zip(params, want_params))
    if same:
        return
    for variant, message in FIT_MISTAKES.items():
        v_params, v_trace = reference_fit(log_likelihood, start, num_steps, 0.3, variant)
        if _close(trace, v_trace, 1e-9, 1e-7) and all(_close(p, q, 1e-9, 1e-7) for p, q in zip(params, v_params)):
            raise GradingError(f"fit: {message}")
    differ = (trace - want_trace).abs() > 1e-9 + 1e-7 * want_trace.abs()
    where = (f"the traces first differ at step {int(differ.nonzero()[0])} (yours {fmt(trace[differ][0])}, "
             f"Adam's {fmt(want_trace[differ][0])})") if bool(differ.any()) else "the final parameters differ"
    raise GradingError(f"fit does not follow Adam's ascent (learning_rate 0.3): {where}. " + FIT_HINT)


@functools.lru_cache(maxsize=8)
def _noise_problem(seed: int, num_steps: int = 30):
    """A local-level model s_t = s_{t-1} + w_t, y_t = s_t + v_t with unknown noise levels, its data and its MLE.

    θ = (log q, log r), F = q, D = r. Returns (Y, log-likelihood(log_q, log_r) -> (), θ_* as a tensor (2,),
    max log p(Y | θ)); θ_* is found with L-BFGS on the exact density and checked against
    ``mbrl_course.filters.kalman_filter``.
    """
    from mbrl_course.filters import kalman_filter

    gen = _generator(4_000 + seed)
    q, r = 0.05 + 0.3 * float(torch.rand((), generator=gen)), 0.2 + 0.8 * float(torch.rand((), generator=gen))
    steps = math.sqrt(q) * torch.randn(num_steps, generator=gen, dtype=DTYPE)
    Y = (steps.cumsum(0) + math.sqrt(r) * torch.randn(num_steps, generator=gen, dtype=DTYPE)).unsqueeze(-1)
    one, m0, S0 = torch.ones(1, 1, dtype=DTYPE), torch.zeros(1, dtype=DTYPE), torch.ones(1, 1, dtype=DTYPE)
    t = torch.arange(1, num_steps + 1, dtype=DTYPE)
    elapsed, eye = torch.minimum(t[:, None], t[None, :]), torch.eye(num_steps, dtype=DTYPE)

    def log_likelihood(log_q: torch.Tensor, log_r: torch.Tensor) -> torch.Tensor:
        """Exact: y ~ N(0, S_0 11ᵀ + q min(t, u) + r I), since s_t = s_0 + w_1 + ... + w_t."""
        cov = 1.0 + log_q.exp() * elapsed + log_r.exp() * eye
        return torch.distributions.MultivariateNormal(torch.zeros(num_steps, dtype=DTYPE), cov).log_prob(Y[:, 0])

    theta = torch.zeros(2, dtype=DTYPE, requires_grad=True)
    optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=100, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        optimizer.zero_grad()
        loss = -log_likelihood(theta[0], theta[1])
        loss.backward()
        return loss

    optimizer.step(closure)
    best = theta.detach()
    best_value = log_likelihood(best[0], best[1]).detach()
    reference = kalman_filter(Y, m0, S0, one, best[0].exp() * one, one, best[1].exp() * one).log_likelihood
    assert abs(float(reference - best_value)) < 1e-8, "the oracle and mbrl_course.filters disagree"
    return Y, log_likelihood, best, best_value


@_single_threaded
def check_fit_marginal_likelihood(fit: Callable, seed: int = 0, num_steps: int = 200) -> None:
    """On the exact log p(Y | log q, log r) of a local-level model, fit reaches the maximum marginal likelihood."""
    _, log_likelihood, best, best_value = _noise_problem(seed)
    start = [torch.tensor(0.5, dtype=DTYPE), torch.tensor(-2.0, dtype=DTYPE)]
    params, trace = _fit(fit, _guarded(log_likelihood, "log q, log r"), start, num_steps, 0.1)
    _expect_ascent(trace)
    with torch.no_grad():
        value = log_likelihood(params[0], params[1])
    gap = float(best_value - value)
    if gap > 0.02:
        raise GradingError(
            f"fit: on the marginal likelihood of a local-level model, {num_steps} steps from (log q, log r) = "
            f"(0.5, -2.0) end at ({float(params[0]):.3g}, {float(params[1]):.3g}), {gap:.3g} nats below the "
            f"maximum at ({float(best[0]):.3g}, {float(best[1]):.3g}). " + FIT_HINT
        )


__all__ = [
    "RandomModel",
    "check_fit_adam_steps",
    "check_fit_climbs",
    "check_fit_marginal_likelihood",
    "check_fit_returns",
    "check_independent",
    "check_kalman_log_likelihood_gradient",
    "check_kalman_log_likelihood_models",
    "check_kalman_log_likelihood_one_step",
    "check_kalman_log_likelihood_values",
    "check_log_predictive_batched",
    "check_log_predictive_models",
    "check_log_predictive_shape",
    "check_log_predictive_values",
    "check_predict_step_batched",
    "check_predict_step_cov",
    "check_predict_step_mean",
    "check_predict_step_reference",
    "check_predict_step_shapes",
    "check_update_step_batched",
    "check_update_step_models",
    "check_update_step_shapes",
    "check_update_step_values",
    "condition_oracle",
    "joint_log_likelihood",
    "joint_moments",
    "log_predictive_oracle",
    "random_model",
    "random_moments",
    "reference_fit",
]
