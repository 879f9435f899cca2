"""Learnable linear-Gaussian models: θ = {m_0, S_0, E, F, C, D, B} as ``nn.Parameter``s.

Covariances are parameterised through their log-Cholesky factor, so any value of the
unconstrained parameter gives a symmetric positive-definite matrix and gradient ascent on
log p(Y_{1:T} | θ) needs no projection.
"""

from __future__ import annotations

import torch
from torch import nn

from mbrl_course.filters._validate import check_covariance
from mbrl_course.filters.kalman import KalmanFilterResult, kalman_filter
from mbrl_course.filters.models import LinearGaussianSSM
from mbrl_course.filters.parallel import parallel_kalman_filter


def positive_definite(unconstrained: torch.Tensor) -> torch.Tensor:
    """Σ = L Lᵀ with L = tril(X, -1) + diag(exp(diag X)): any ``(..., n, n)`` X gives an SPD Σ."""
    L = torch.tril(unconstrained, -1) + torch.diag_embed(torch.diagonal(unconstrained, dim1=-2, dim2=-1).exp())
    return L @ L.mT


def positive_definite_inverse(cov: torch.Tensor) -> torch.Tensor:
    """The X with ``positive_definite(X) == cov`` for symmetric positive-definite ``cov: (..., n, n)``."""
    L = torch.linalg.cholesky(0.5 * (cov + cov.mT))
    return torch.tril(L, -1) + torch.diag_embed(torch.diagonal(L, dim1=-2, dim2=-1).log())


class LinearGaussianModel(nn.Module):
    """The slide's linear-Gaussian SSM with learnable θ, for :func:`~mbrl_course.filters.fit`.

    p(s_0) = N(m_0, S_0), p(s_t | s_{t-1}, u_t) = N(E s_{t-1} + B u_t, F), p(y_t | s_t) = N(C s_t, D).

    Parameter names (the names ``fit(trainable=...)`` accepts): ``initial_mean`` m_0,
    ``initial_cov`` S_0, ``transition_matrix`` E, ``transition_cov`` F, ``emission_matrix`` C,
    ``emission_cov`` D, ``control_matrix`` B. Covariances are stored as ``<name>_unconstrained``
    log-Cholesky factors (see :func:`positive_definite`) and read back through the properties.
    Constructed from initial values (fixed matrices; leading batch dimensions are allowed).
    """

    def __init__(
        self,
        initial_mean: torch.Tensor,
        initial_cov: torch.Tensor,
        transition_matrix: torch.Tensor,
        transition_cov: torch.Tensor,
        emission_matrix: torch.Tensor,
        emission_cov: torch.Tensor,
        control_matrix: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        for name, cov in (("initial_cov", initial_cov), ("transition_cov", transition_cov),
                          ("emission_cov", emission_cov)):
            if not isinstance(cov, torch.Tensor) or not cov.is_floating_point():
                raise TypeError(f"{name}: expected a floating-point tensor, got {type(cov).__name__}")
            check_covariance(name, cov, definite=True)
        self.initial_mean = nn.Parameter(initial_mean.detach().clone())
        self.initial_cov_unconstrained = nn.Parameter(positive_definite_inverse(initial_cov.detach()))
        self.transition_matrix = nn.Parameter(transition_matrix.detach().clone())
        self.transition_cov_unconstrained = nn.Parameter(positive_definite_inverse(transition_cov.detach()))
        self.emission_matrix = nn.Parameter(emission_matrix.detach().clone())
        self.emission_cov_unconstrained = nn.Parameter(positive_definite_inverse(emission_cov.detach()))
        self.control_matrix = None if control_matrix is None else nn.Parameter(control_matrix.detach().clone())

    @classmethod
    def from_ssm(cls, ssm: LinearGaussianSSM) -> LinearGaussianModel:
        """Learnable copy of a :class:`LinearGaussianSSM` (its current values are the starting point)."""
        return cls(ssm.initial_mean, ssm.initial_cov, ssm.transition_matrix, ssm.transition_cov,
                   ssm.emission_matrix, ssm.emission_cov, ssm.control_matrix)

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
               parallel: bool = True) -> KalmanFilterResult:
        """The Kalman filter under the current θ (parallel in time by default)."""
        fn = parallel_kalman_filter if parallel else kalman_filter
        B = None if controls is None else self.control_matrix
        if controls is not None and B is None:
            raise ValueError("controls: this model has no control_matrix (B), so it takes no controls")
        return fn(observations, self.initial_mean, self.initial_cov, self.transition_matrix, self.transition_cov,
                  self.emission_matrix, self.emission_cov, controls, B)

    def log_likelihood(self, observations: torch.Tensor, controls: torch.Tensor | None = None,
                       parallel: bool = True) -> torch.Tensor:
        """log p(Y_{1:T} | θ) = Σ_t log ∫ p(y_t | s_t) p(s_t | Y_{1:t-1}, θ) ds_t: (...)."""
        return self.filter(observations, controls, parallel).log_likelihood


__all__ = ["LinearGaussianModel", "positive_definite", "positive_definite_inverse"]
