"""Fitting θ by maximising the marginal likelihood p(Y_{1:T} | θ) with autograd.

θ_* = argmax_θ Σ_t log ∫ p(y_t | s_t) p(s_t | Y_{1:t-1}, θ) ds_t, the slide's "Parameterizing the
filtering model": the Kalman filter computes every term exactly, autograd differentiates it, and
a gradient-based optimiser (L-BFGS or Adam) climbs it. :class:`LinearGaussianModel` is the
linear-Gaussian θ as learnable parameters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from mbrl_course._checks import check_choice, check_positive_float, check_positive_int
from mbrl_course.filters.kalman import KalmanFilterResult, kalman_filter, method_from_parallel
from mbrl_course.filters.params import LinearGaussianSSM, positive_definite, positive_definite_inverse


class LinearGaussianModel(nn.Module):
    """The learnable θ = {m_0, S_0, E, F, C, D, B} of a :class:`~mbrl_course.filters.LinearGaussianSSM`, for :func:`fit`.

    p(s_0) = N(m_0, S_0), p(s_t | s_{t-1}, u_t) = N(E s_{t-1} + B u_t, F), p(y_t | s_t) = N(C s_t, D).

    Built from a ``LinearGaussianSSM`` (its values are the starting point), or from the same fields
    as separate arguments, ``LinearGaussianModel(initial_mean, initial_cov, transition_matrix,
    transition_cov, emission_matrix, emission_cov, control_matrix=None)``, which are checked by the
    container. Each field becomes an ``nn.Parameter`` of the same name (the names ``fit(trainable=...)``
    accepts); a covariance is stored as ``<name>_unconstrained``, its log-Cholesky factor (see
    :func:`~mbrl_course.filters.positive_definite`), so any value of it is a valid covariance, and
    read back through a property. :meth:`ssm` gives the current θ as a container.
    """

    COVARIANCES = ("initial_cov", "transition_cov", "emission_cov")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        ssm = args[0] if len(args) == 1 and not kwargs and isinstance(args[0], LinearGaussianSSM) else (
            LinearGaussianSSM(*args, **kwargs))
        for name in (f.name for f in dataclasses.fields(ssm)):  # m_0, S_0, E, F, C, D, B
            value = getattr(ssm, name)
            if name in self.COVARIANCES:
                self.register_parameter(name + "_unconstrained", nn.Parameter(positive_definite_inverse(value.detach())))
            elif value is not None:
                self.register_parameter(name, nn.Parameter(value.detach().clone()))
            else:
                setattr(self, name, None)

    @classmethod
    def from_ssm(cls, ssm: LinearGaussianSSM) -> LinearGaussianModel:
        """Learnable copy of a :class:`LinearGaussianSSM` (its current values are the starting point)."""
        return cls(ssm)

    @property
    def initial_cov(self) -> torch.Tensor:
        """S_0 = positive_definite(initial_cov_unconstrained)."""
        return positive_definite(self.initial_cov_unconstrained)

    @property
    def transition_cov(self) -> torch.Tensor:
        """F = positive_definite(transition_cov_unconstrained)."""
        return positive_definite(self.transition_cov_unconstrained)

    @property
    def emission_cov(self) -> torch.Tensor:
        """D = positive_definite(emission_cov_unconstrained)."""
        return positive_definite(self.emission_cov_unconstrained)

    def ssm(self) -> LinearGaussianSSM:
        """The current θ as a :class:`LinearGaussianSSM` (differentiable tensors)."""
        return LinearGaussianSSM(self.initial_mean, self.initial_cov, self.transition_matrix, self.transition_cov,
                                 self.emission_matrix, self.emission_cov, self.control_matrix)

    def filter(self, observations: torch.Tensor, controls: torch.Tensor | None = None,
               parallel: bool | None = None) -> KalmanFilterResult:
        """:func:`~mbrl_course.filters.kalman_filter` under the current θ (``parallel``: None lets it choose)."""
        return kalman_filter(self.ssm(), observations, controls, method=method_from_parallel(parallel))

    def log_likelihood(self, observations: torch.Tensor, controls: torch.Tensor | None = None,
                       parallel: bool | None = None) -> torch.Tensor:
        """log p(Y_{1:T} | θ) = Σ_t log ∫ p(y_t | s_t) p(s_t | Y_{1:t-1}, θ) ds_t: (...)."""
        return self.filter(observations, controls, parallel).log_likelihood


@dataclass
class FitConfig:
    """How :func:`fit` climbs log p(Y_{1:T} | θ)."""

    num_steps: int = 100
    """optimiser steps (L-BFGS iterations, each with a line search, or Adam steps)"""
    optimizer: str = "lbfgs"
    """"lbfgs" (strong-Wolfe line search; best for the exact, smooth likelihood) or "adam\""""
    learning_rate: float | None = None
    """step size; None means 1.0 for L-BFGS and 0.05 for Adam"""
    tolerance: float = 1e-10
    """stop early when the average log-likelihood per observed step changes by less than this"""
    progress: bool = True
    """show a tqdm progress bar"""


@dataclass
class FitResult:
    """What :func:`fit` returns: the fitted model and the trace of log p(Y_{1:T} | θ)."""

    model: nn.Module
    """the same module, its trainable parameters now at the optimum found"""
    log_likelihoods: torch.Tensor
    """log p(Y_{1:T} | θ) (summed over the batch) before each step and after the last: (steps + 1,)"""
    converged: bool
    """whether the tolerance stopped the run before num_steps"""


def _select(model: nn.Module, trainable: Sequence[str] | None) -> list[nn.Parameter]:
    named = dict(model.named_parameters())
    if trainable is None:
        return list(named.values())
    if isinstance(trainable, str):
        trainable = [trainable]
    chosen: dict[str, nn.Parameter] = {}
    for want in trainable:
        hits = {n: p for n, p in named.items() if n == want or n.startswith(want + "_") or n.startswith(want + ".")}
        if not hits:
            raise ValueError(f"trainable: {want!r} names no parameter of the model; it has {', '.join(named)}")
        chosen.update(hits)
    return list(chosen.values())


def fit(
    model: nn.Module,
    observations: torch.Tensor,
    trainable: Sequence[str] | None = None,
    config: FitConfig | None = None,
    **log_likelihood_kwargs,
) -> FitResult:
    """Maximum marginal likelihood: θ_* = argmax_θ log p(Y_{1:T} | θ) = argmax_θ Σ_t log p(y_t | Y_{1:t-1}, θ).

    ``model`` is any module with ``log_likelihood(observations, **log_likelihood_kwargs) -> (...)``,
    e.g. :class:`LinearGaussianModel` or :class:`BayesianKalmanFilter`; the batch of sequences is summed.
    ``trainable`` lists the parameters to fit (e.g. ``["transition_matrix", "transition_cov"]``; a
    name also selects ``<name>_...`` and ``<name>.<...>``), None fits all; the others stay fixed.
    The optimiser minimises -log p(Y_{1:T} | θ) divided by the number of time steps. L-BFGS suits the
    linear-Gaussian model; for ODE parameter dynamics use Adam with a small learning rate.
    ``observations: (..., T, dy)``. Returns a :class:`FitResult` with the likelihood trace.
    """
    cfg = config or FitConfig()
    steps = check_positive_int("config.num_steps", cfg.num_steps)
    check_choice("config.optimizer", cfg.optimizer, ("lbfgs", "adam"))
    lr = cfg.learning_rate if cfg.learning_rate is not None else (1.0 if cfg.optimizer == "lbfgs" else 0.05)
    lr = check_positive_float("config.learning_rate", lr)
    if not hasattr(model, "log_likelihood"):
        raise TypeError(f"model: expected a module with a log_likelihood method, got {type(model).__name__}")
    params = _select(model, trainable)
    if not params:
        raise ValueError("trainable: selects no parameters")
    scale = float(observations.shape[-2]) * max(1, math.prod(observations.shape[:-2]))
    frozen = [p for p in model.parameters() if all(p is not q for q in params) and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    if cfg.optimizer == "lbfgs":
        optimizer = torch.optim.LBFGS(params, lr=lr, max_iter=1, max_eval=25, history_size=20,
                                      line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-14)
    else:
        optimizer = torch.optim.Adam(params, lr=lr)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = -model.log_likelihood(observations, **log_likelihood_kwargs).sum() / scale
        loss.backward()
        return loss

    trace: list[float] = []
    converged = False
    try:
        bar = tqdm(range(steps), desc="fit", disable=not cfg.progress)
        for _ in bar:
            if cfg.optimizer == "lbfgs":
                loss = optimizer.step(closure)
            else:
                loss = closure()
                optimizer.step()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(
                    "fit: the log-likelihood became non-finite; lower config.learning_rate or start closer"
                )
            trace.append(-value * scale)
            bar.set_postfix(log_likelihood=f"{-value * scale:.4g}")
            if len(trace) > 1 and abs(trace[-1] - trace[-2]) / scale < cfg.tolerance:
                converged = True
                break
        with torch.no_grad():
            trace.append(float(model.log_likelihood(observations, **log_likelihood_kwargs).sum()))
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return FitResult(model=model, log_likelihoods=torch.tensor(trace, dtype=torch.float64), converged=converged)


__all__ = ["FitConfig", "FitResult", "LinearGaussianModel", "fit"]
