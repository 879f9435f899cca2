"""Hidden checks of Assignment 2, "Kalman filtering and learning by marginal likelihood": the instructor's only.

Loaded by the hidden test regions of ``solutions/02-kalman/02-kalman.ipynb``::

    from mbrl_course.grading.instructor import hidden_checks
    kalman_hidden = hidden_checks("kalman")

What is here and not in :mod:`mbrl_course.grading.kalman` (the visible checks, which the hidden
tests also call on other seeds and sizes):

- exact oracles with the students' own signatures, for any input: :func:`condition_oracle`
  (update_step), :func:`log_predictive_oracle` (log_predictive), :func:`joint_log_likelihood`
  (kalman_log_likelihood, from :func:`joint_moments`) and :func:`reference_fit` (fit). They share
  no code with the recursion: Gaussian conditioning of the joint of (s_t, y_t), the joint Gaussian
  density of the stacked observations Y_{1:T}, ``torch.distributions.MultivariateNormal``;
- comparisons with the reference implementation :mod:`mbrl_course.filters`;
- the catalogues of mistakes that need those (the filter's loop computed with each recognised slip,
  Adam's ascent with each recognised slip).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch

from mbrl_course.filters import kalman_filter
from mbrl_course.filters import predict_step as reference_predict_step
from mbrl_course.filters import update_step as reference_update_step
from mbrl_course.grading.kalman import (
    DTYPE,
    FIT_HINT,
    FIT_MISTAKES,
    LIKELIHOOD_HINT,
    LIKELIHOOD_MISTAKES,
    LOG_2PI,
    PREDICT_HINT,
    PREDICTIVE_HINT,
    UPDATE_HINT,
    RandomModel,
    _call,
    _close,
    _expect_ascent,
    _expect_value,
    _fit,
    _generator,
    _largest_difference,
    _log_likelihood,
    _log_predictive,
    _no_2pi,
    _predict,
    _quadratic_problem,
    _single_threaded,
    _update,
    check_log_predictive_values,
    check_predict_step_cov,
    check_predict_step_mean,
    check_update_step_values,
    gradients_wrt_F_and_D,
    random_model,
    random_moments,
)
from mbrl_course.grading.report import GradingError


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


def reference_fit(log_likelihood: Callable, initial_params: Sequence[torch.Tensor], num_steps: int,
                  learning_rate: float, variant: str = "correct") -> tuple[list[torch.Tensor], torch.Tensor]:
    """Gradient ascent with Adam (the assignment's recipe), or one of its recognised mistakes (``FIT_MISTAKES``)."""
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


# ------------------------------------------------------------------------------ predict_step
@_single_threaded
def check_predict_step_models(predict_step: Callable, seed: int = 0, runs: int = 4) -> None:
    """The visible checks of μ_t and Σ_t on random models of several sizes (dx = 1..4), and equal to
    ``mbrl_course.filters.predict_step`` there."""
    for run in range(runs):
        dx, model_seed = 1 + (seed + run) % 4, seed + 17 * run
        check_predict_step_mean(predict_step, model_seed, state_dim=dx)
        check_predict_step_cov(predict_step, model_seed, state_dim=dx)
        model = random_model(model_seed, state_dim=dx)
        mu, Sigma = _predict(predict_step, model.m0, model.S0, model.E, model.F)
        want_mu, want_Sigma = reference_predict_step(model.m0, model.S0, model.E, model.F)
        hint = f"(a random model with dx = {dx}) " + PREDICT_HINT
        _expect_value("predict_step", mu, want_mu, "predicted mean μ_t (against mbrl_course.filters)", hint=hint)
        _expect_value("predict_step", Sigma, want_Sigma, "predicted covariance Σ_t (against mbrl_course.filters)",
                      hint=hint)


# ------------------------------------------------------------------------------ update_step
UPDATE_SIZES = [(3, 1), (2, 2), (2, 4), (4, 3)]
"""(dx, dy): dy < dx, dy = dx, dy > dx, dy = 1."""


@_single_threaded
def check_update_step_models(update_step: Callable, seed: int = 0, runs: int = 4) -> None:
    """Exact on random models of several sizes (dy < dx, dy = dx, dy > dx, dy = 1) and equal to the reference."""
    for run in range(runs):
        dx, dy = UPDATE_SIZES[(seed + run) % len(UPDATE_SIZES)]
        check_update_step_values(update_step, seed + 31 * run, sizes=[(dx, dy)])
        mu, Sigma, y, C, D = random_moments(seed + 31 * run, state_dim=dx, obs_dim=dy)
        m, S = _update(update_step, mu, Sigma, y, C, D)
        want_m, want_S, _ = reference_update_step(mu, Sigma, y, C, D)
        _expect_value("update_step", m, want_m, "filtered mean m_t (against mbrl_course.filters)", hint=UPDATE_HINT)
        _expect_value("update_step", S, want_S, "filtered covariance S_t (against mbrl_course.filters)",
                      hint=UPDATE_HINT)


# ------------------------------------------------------------------------------ log_predictive
PREDICTIVE_SIZES = [(3, 1), (2, 2), (2, 4), (4, 3), (1, 1)]


@_single_threaded
def check_log_predictive_models(log_predictive: Callable, seed: int = 0, runs: int = 4) -> None:
    """Exact on random models of several sizes, and equal to the reference's log p(y_t | Y_{1:t-1})."""
    for run in range(runs):
        dx, dy = PREDICTIVE_SIZES[(seed + run) % len(PREDICTIVE_SIZES)]
        check_log_predictive_values(log_predictive, seed + 43 * run, sizes=[(dx, dy)])
        args = random_moments(seed + 43 * run, state_dim=dx, obs_dim=dy)
        _, _, want = reference_update_step(*args)
        value = _log_predictive(log_predictive, *args).reshape(want.shape)
        _expect_value("log_predictive", value, want, "log p(y_t | Y_{1:t-1}) (against mbrl_course.filters)",
                      hint=PREDICTIVE_HINT)


# ------------------------------------------------------------------------------ kalman_log_likelihood
def _variant_log_likelihood(Y, m0, S0, E, F, C, D, variant: str) -> torch.Tensor:
    """log p(Y_{1:T}) computed correctly (``variant="correct"``) or with one recognised mistake."""
    m, S = m0, S0
    terms = []
    for t in range(Y.shape[-2]):
        y = Y[t]
        if variant == "update_then_predict":
            terms.append(log_predictive_oracle(m, S, y, C, D))
            m, S, _ = reference_update_step(m, S, y, C, D)
            m, S = reference_predict_step(m, S, E, F)
            continue
        mu, Sigma = (m, S) if variant == "no_predict" else reference_predict_step(m, S, E, F)
        if variant == "filtered_innovation":
            terms.append(log_predictive_oracle(m, S, y, C, D))
        else:
            terms.append(log_predictive_oracle(mu, Sigma, y, C, D))
        if variant == "no_update":
            m, S = mu, Sigma
        else:
            m, S, _ = reference_update_step(mu, Sigma, y, C, D)
    terms = torch.stack(terms)
    return {"mean": terms.mean(), "last": terms[-1], "skip_first": terms[1:].sum()}.get(variant, terms.sum())


def _likelihood_mistakes(model: RandomModel) -> dict[str, tuple[torch.Tensor, str]]:
    """The model's log p(Y_{1:T}) computed with each recognised slip of the filter's loop: label -> (value, message)."""
    args = (model.Y, model.m0, model.S0, model.E, model.F, model.C, model.D)
    T, dy = model.Y.shape[-2:]
    correct = _variant_log_likelihood(*args, "correct")
    labels = ("filtered_innovation", "update_then_predict", "no_update", "no_predict", "mean", "last", "skip_first")
    messages = {label: LIKELIHOOD_MISTAKES[label] for label in labels}
    if T == 1:  # scoring y_1 with p(s_0) is the same mistake in both loops
        messages["filtered_innovation"] = messages["update_then_predict"] = LIKELIHOOD_MISTAKES["prior_y1"]
    out = {name: (_variant_log_likelihood(*args, name), message) for name, message in messages.items()}
    out["no 2pi"] = (correct + 0.5 * T * dy * LOG_2PI, _no_2pi(T, dy))
    return out


LIKELIHOOD_SIZES = [(2, 1, 25), (4, 2, 8), (1, 1, 30), (3, 3, 15), (2, 3, 5)]
"""(dx, dy, T)."""


@_single_threaded
def check_kalman_log_likelihood_models(kalman_log_likelihood: Callable, seed: int = 0, runs: int = 4) -> None:
    """Equals the exact log-density of the stacked observations N(vec Y | mean, cov) and
    ``mbrl_course.filters.kalman_filter`` on random models (non-symmetric E) of several sizes and lengths."""
    for run in range(runs):
        dx, dy, T = LIKELIHOOD_SIZES[(seed + run) % len(LIKELIHOOD_SIZES)]
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
def check_kalman_log_likelihood_exact_gradient(kalman_log_likelihood: Callable, seed: int = 0) -> None:
    """Differentiable: autograd's gradient with respect to F and D equals that of the exact log-density."""
    model = random_model(seed, 2, 1, num_steps=10)
    got = gradients_wrt_F_and_D(lambda *a: _call("kalman_log_likelihood", kalman_log_likelihood, *a), model)
    want = gradients_wrt_F_and_D(joint_log_likelihood, model)
    for name, g, w in zip(("F", "D"), got, want):  # gradients in a symmetric matrix: compare their symmetric parts
        g, w = 0.5 * (g + g.mT), 0.5 * (w + w.mT)
        if not _close(g, w, 1e-7, 1e-5):
            raise GradingError(
                f"kalman_log_likelihood: the gradient with respect to {name} differs from that of the exact "
                f"log-likelihood:{_largest_difference(g, w)}."
            )


# ------------------------------------------------------------------------------ fit
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
    where = (f"the traces first differ at step {int(differ.nonzero()[0])} (yours {float(trace[differ][0]):.5g}, "
             f"Adam's {float(want_trace[differ][0]):.5g})") if bool(differ.any()) else "the final parameters differ"
    raise GradingError(f"fit does not follow Adam's ascent (learning_rate 0.3): {where}. " + FIT_HINT)


@functools.lru_cache(maxsize=8)
def _noise_problem(seed: int, num_steps: int = 30):
    """A local-level model s_t = s_{t-1} + w_t, y_t = s_t + v_t with unknown noise levels, its data and its MLE.

    θ = (log q, log r), F = q, D = r. Returns (Y, log-likelihood(log_q, log_r) -> (), θ_* as a tensor (2,),
    max log p(Y | θ)); θ_* is found with L-BFGS on the exact density and checked against
    ``mbrl_course.filters.kalman_filter``.
    """
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
