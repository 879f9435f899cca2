"""State-space models: p(s_0), p(s_t | s_{t-1}, u_t), p(y_t | s_t), with sampling of (S_{1:T}, Y_{1:T}).

The slide's factorisation, for every model here::

    p(S_{1:T}, Y_{1:T}) = p(s_0) Π_{t=1}^T p(y_t | s_t) p(s_t | s_{t-1})

- :class:`LinearGaussianSSM`: the Kalman filter's model, N(E_t s_{t-1} + B u_t, F_t), N(C s_t, D)
  (defined in :mod:`.params`: it is also the parameter container every linear-Gaussian function takes);
- :class:`NonlinearGaussianSSM`: N(f(s_{t-1}, u_t), F_t), N(h(s_t), D) (EKF, particle filter);
- :class:`HiddenMarkovModel`: K discrete states and M discrete observations;
- :class:`GridSSM`: a continuous Gaussian SSM discretised on K grid points (the Bayesian filter).

Each model is a plain container with a ``sample`` method and thin methods that call the
filters of this package; the filters themselves are functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mbrl_course._checks import as_tensor, check_positive_int
from mbrl_course.filters._gaussian import gaussian_log_density, mask_covariance, matvec, psd_factor
from mbrl_course.filters._validate import SUPPORTED_DTYPES, check_covariance
from mbrl_course.filters.bayes import BayesianFilterResult, bayesian_filter
from mbrl_course.filters.kalman import KalmanFilterResult
from mbrl_course.filters.nonlinear import ParticleFilterResult, extended_kalman_filter, particle_filter
from mbrl_course.filters.params import LinearGaussianSSM


def _float_tensor(name: str, value, like: torch.Tensor | None = None) -> torch.Tensor:
    if like is not None:
        return as_tensor(name, value, dtype=like.dtype, device=like.device) if not isinstance(
            value, torch.Tensor) else value
    x = as_tensor(name, value)
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    if x.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {x.dtype}")
    return x


def _step(x: torch.Tensor, t: int, fixed_ndim: int) -> torch.Tensor:
    """The matrix of step t (0-based) of a fixed ``(r, c)`` or time-varying ``(..., T|1, r, c)`` one."""
    if x.ndim == fixed_ndim:
        return x
    return x[..., 0 if x.shape[-3] == 1 else t, :, :]


def _check_time_axis(name: str, x: torch.Tensor, num_steps: int) -> None:
    if x.ndim > 2 and x.shape[-3] not in (1, num_steps):
        raise ValueError(
            f"{name}: has a time axis of size {x.shape[-3]}, which fits neither num_steps = {num_steps} nor 1"
        )


def _matrix_batch(x: torch.Tensor) -> torch.Size:
    """Batch dimensions of a fixed ``(r, c)`` or time-varying ``(..., T, r, c)`` matrix."""
    return x.shape[:-3] if x.ndim > 2 else torch.Size([])


def _model_batch(*shapes: torch.Size) -> torch.Size:
    try:
        return torch.broadcast_shapes(*shapes)
    except RuntimeError as err:
        raise ValueError(f"the batch dimensions of the model's parameters do not broadcast: {shapes}") from err


def _sample_shape(sample_shape: Sequence[int] | torch.Size | int) -> torch.Size:
    if isinstance(sample_shape, int):
        sample_shape = (sample_shape,)
    return torch.Size(sample_shape)


@dataclass
class NonlinearGaussianSSM:
    """p(s_0) = N(m_0, S_0),  p(s_t | s_{t-1}, u_t) = N(f(s_{t-1}, u_t), F_t),  p(y_t | s_t) = N(h(s_t), D)."""

    initial_mean: torch.Tensor
    """m_0: (..., dx)"""
    initial_cov: torch.Tensor
    """S_0: (..., dx, dx)"""
    transition_fn: Callable[..., torch.Tensor]
    """f: states (..., dx) [, controls (..., du)] -> (..., dx), row by row"""
    transition_cov: torch.Tensor
    """F_t: (dx, dx) or (..., T, dx, dx)"""
    emission_fn: Callable[[torch.Tensor], torch.Tensor]
    """h: states (..., dx) -> (..., dy), row by row"""
    emission_cov: torch.Tensor
    """D: (dy, dy) or (..., T, dy, dy)"""

    def __post_init__(self) -> None:
        self.initial_mean = _float_tensor("initial_mean", self.initial_mean)
        ref = self.initial_mean
        for name in ("initial_cov", "transition_cov", "emission_cov"):
            setattr(self, name, _float_tensor(name, getattr(self, name), ref))

    def sample(
        self,
        num_steps: int,
        sample_shape: Sequence[int] | int = (),
        controls: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling s_t ~ N(f(s_{t-1}, u_t), F_t), y_t ~ N(h(s_t), D).

        Returns ``(states: (*sample_shape, ..., T, dx), observations: (*sample_shape, ..., T, dy))``.
        """
        T = check_positive_int("num_steps", num_steps)
        shape = _sample_shape(sample_shape)
        ref = self.initial_mean
        _check_time_axis("transition_cov", self.transition_cov, T)
        _check_time_axis("emission_cov", self.emission_cov, T)
        us = [None] * T if controls is None else list(_float_tensor("controls", controls, ref).unbind(-2))
        if len(us) != T:
            raise ValueError(f"controls: expected a time axis of size {T}, got {len(us)}")

        batch = _model_batch(self.initial_mean.shape[:-1], self.initial_cov.shape[:-2],
                             _matrix_batch(self.transition_cov), _matrix_batch(self.emission_cov))

        def noise(factor: torch.Tensor) -> torch.Tensor:
            eps = torch.randn(shape + batch + factor.shape[-1:], generator=generator, dtype=ref.dtype,
                              device=ref.device)
            return matvec(factor, eps)

        s = self.initial_mean + noise(psd_factor(self.initial_cov))
        F_factor, D_factor = psd_factor(self.transition_cov), psd_factor(self.emission_cov)
        states, observations = [], []
        for t in range(T):
            mean = self.transition_fn(s) if us[t] is None else self.transition_fn(s, us[t].expand(
                s.shape[:-1] + us[t].shape[-1:]))
            Ff, Df = _step(F_factor, t, 2), _step(D_factor, t, 2)
            s = mean + noise(Ff)
            y = self.emission_fn(s) + noise(Df)
            states.append(s)
            observations.append(y)
        return torch.stack(states, -2), torch.stack(observations, -2)

    def _args(self):
        return (self.initial_mean, self.initial_cov, self.transition_fn, self.transition_cov,
                self.emission_fn, self.emission_cov)

    def extended_kalman_filter(self, observations: torch.Tensor,
                               controls: torch.Tensor | None = None) -> KalmanFilterResult:
        """The EKF on this model (see :func:`~mbrl_course.filters.extended_kalman_filter`)."""
        return extended_kalman_filter(observations, *self._args(), controls=controls)

    def particle_filter(self, observations: torch.Tensor, num_particles: int = 1000,
                        controls: torch.Tensor | None = None, **kwargs) -> ParticleFilterResult:
        """The bootstrap particle filter on this model (see :func:`~mbrl_course.filters.particle_filter`)."""
        return particle_filter(observations, *self._args(), num_particles=num_particles, controls=controls,
                               **kwargs)


def _categorical(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of ``probs: (..., K)`` -> ``(...)`` long."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])


def _check_stochastic(name: str, probs: torch.Tensor) -> None:
    tol = 1e-5 if probs.dtype == torch.float32 else 1e-9
    if bool((probs < 0).any()) or bool(((probs.sum(-1) - 1).abs() > tol).any()):
        raise ValueError(f"{name}: expected non-negative rows summing to 1")


@dataclass
class HiddenMarkovModel:
    """K hidden states, M observation symbols.

    p(s_0 = k) = π_k,  p(s_t = j | s_{t-1} = i) = P_ij,  p(y_t = o | s_t = k) = O_ko.
    """

    initial_probs: torch.Tensor
    """π: (K,)"""
    transition_probs: torch.Tensor
    """P: (K, K), rows sum to 1"""
    emission_probs: torch.Tensor
    """O: (K, M), rows sum to 1"""

    def __post_init__(self) -> None:
        self.initial_probs = _float_tensor("initial_probs", self.initial_probs)
        ref = self.initial_probs
        self.transition_probs = _float_tensor("transition_probs", self.transition_probs, ref)
        self.emission_probs = _float_tensor("emission_probs", self.emission_probs, ref)
        K = ref.shape[-1]
        if tuple(self.transition_probs.shape) != (K, K):
            raise ValueError(f"transition_probs: expected shape ({K}, {K}), got {tuple(self.transition_probs.shape)}")
        if self.emission_probs.ndim != 2 or self.emission_probs.shape[0] != K:
            raise ValueError(f"emission_probs: expected shape ({K}, M), got {tuple(self.emission_probs.shape)}")
        for name in ("initial_probs", "transition_probs", "emission_probs"):
            _check_stochastic(name, getattr(self, name))

    def emission_log_probs(self, observations: torch.Tensor) -> torch.Tensor:
        """log p(y_t | s_t = k) = log O_{k, y_t} for ``observations: (..., T)`` integer symbols -> ``(..., T, K)``.

        A negative symbol marks a missing y_t and gives a row of zeros (no update).
        """
        y = as_tensor("observations", observations)
        if y.is_floating_point() or y.dtype == torch.bool:
            raise TypeError(f"observations: expected integer symbols, got dtype {y.dtype}")
        M = self.emission_probs.shape[1]
        if bool((y >= M).any()):
            raise ValueError(f"observations: expected symbols in 0..{M - 1} (or negative for missing), got {int(y.max())}")
        y = y.to(self.emission_probs.device)
        missing = y < 0
        logO = self.emission_probs.log().T  # (M, K)
        out = logO[y.clamp_min(0)]
        return torch.where(missing.unsqueeze(-1), torch.zeros_like(out), out)

    def sample(self, num_steps: int, sample_shape: Sequence[int] | int = (),
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """s_0 ~ π, s_t ~ P[s_{t-1}], y_t ~ O[s_t]: returns ``(states, observations)``, each ``(*sample_shape, T)`` long."""
        T = check_positive_int("num_steps", num_steps)
        shape = _sample_shape(sample_shape)
        s = _categorical(self.initial_probs.expand(shape + self.initial_probs.shape), generator)
        states, observations = [], []
        for _ in range(T):
            s = _categorical(self.transition_probs[s], generator)
            states.append(s)
            observations.append(_categorical(self.emission_probs[s], generator))
        return torch.stack(states, -1), torch.stack(observations, -1)

    def filter(self, observations: torch.Tensor) -> BayesianFilterResult:
        """The exact Bayesian filter (see :func:`~mbrl_course.filters.bayesian_filter`)."""
        return bayesian_filter(self.initial_probs, self.transition_probs, self.emission_log_probs(observations))


@dataclass
class GridSSM:
    """A continuous-state SSM restricted to K grid points g_1..g_K, with a Gaussian emission density.

    p(s_0 = g_k) = π_k,  p(s_t = g_j | s_{t-1} = g_i) = P_ij,  p(y_t | s_t = g_k) = N(y_t | h(g_k), D).
    Build one from a Gaussian SSM with :meth:`from_gaussian`.
    """

    grid: torch.Tensor
    """g_k: (K, dx)"""
    initial_probs: torch.Tensor
    """π: (K,)"""
    transition_probs: torch.Tensor
    """P: (K, K), rows sum to 1"""
    emission_fn: Callable[[torch.Tensor], torch.Tensor]
    """h: (..., dx) -> (..., dy)"""
    emission_cov: torch.Tensor
    """D: (dy, dy)"""

    @classmethod
    def from_gaussian(
        cls,
        grid: torch.Tensor,
        initial_mean: torch.Tensor,
        initial_cov: torch.Tensor,
        transition_fn: Callable[[torch.Tensor], torch.Tensor],
        transition_cov: torch.Tensor,
        emission_fn: Callable[[torch.Tensor], torch.Tensor],
        emission_cov: torch.Tensor,
    ) -> GridSSM:
        """Discretise p(s_0) = N(m_0, S_0), p(s_t | s_{t-1}) = N(f(s_{t-1}), F) on ``grid: (K, dx)``.

        π_k ∝ N(g_k | m_0, S_0),  P_ij ∝ N(g_j | f(g_i), F), normalised over the grid; a fine,
        wide, evenly spaced grid approximates the continuous model (and its filter).
        """
        g = _float_tensor("grid", grid)
        if g.ndim != 2:
            raise ValueError(f"grid: expected shape (K, dx), got {tuple(g.shape)}")
        dx = g.shape[1]
        m0 = _float_tensor("initial_mean", initial_mean, g)
        S0 = _float_tensor("initial_cov", initial_cov, g)
        F = _float_tensor("transition_cov", transition_cov, g)
        D = _float_tensor("emission_cov", emission_cov, g)
        for name, cov in (("initial_cov", S0), ("transition_cov", F)):
            if tuple(cov.shape) != (dx, dx):
                raise ValueError(f"{name}: expected shape ({dx}, {dx}), got {tuple(cov.shape)}")
            check_covariance(name, cov, definite=True)
        check_covariance("emission_cov", D, definite=True)

        log_pi = gaussian_log_density(g - m0, torch.linalg.cholesky(S0))  # log N(g_k | m_0, S_0)
        f_g = transition_fn(g)  # (K, dx)
        log_P = gaussian_log_density(g.unsqueeze(0) - f_g.unsqueeze(1), torch.linalg.cholesky(F))  # [i, j]
        return cls(
            grid=g,
            initial_probs=torch.softmax(log_pi, -1),
            transition_probs=torch.softmax(log_P, -1),
            emission_fn=emission_fn,
            emission_cov=D,
        )

    def emission_log_probs(self, observations: torch.Tensor) -> torch.Tensor:
        """log N(y_t | h(g_k), D) over the observed entries of y_t: ``(..., T, dy)`` -> ``(..., T, K)``.

        NaN entries are missing (the density of the observed entries is used; all missing gives 0).
        """
        y = _float_tensor("observations", observations, self.grid)
        mask = ~torch.isnan(y)
        y0 = torch.where(mask, y, torch.zeros_like(y))
        h = self.emission_fn(self.grid)  # (K, dy)
        dy = h.shape[-1]
        if y.ndim < 2 or y.shape[-1] != dy:
            raise ValueError(f"observations: expected shape (..., T, {dy}), got {tuple(y.shape)}")
        L = torch.linalg.cholesky(mask_covariance(self.emission_cov, mask)).unsqueeze(-3)  # (..., T, 1, dy, dy)
        residual = torch.where(mask.unsqueeze(-2), y0.unsqueeze(-2) - h, torch.zeros_like(h))  # (..., T, K, dy)
        return gaussian_log_density(residual, L, mask.unsqueeze(-2))

    def sample(self, num_steps: int, sample_shape: Sequence[int] | int = (),
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid states and observations y_t ~ N(h(g_{s_t}), D).

        Returns ``(state_indices: (*sample_shape, T) long, observations: (*sample_shape, T, dy))``.
        """
        T = check_positive_int("num_steps", num_steps)
        shape = _sample_shape(sample_shape)
        s = _categorical(self.initial_probs.expand(shape + self.initial_probs.shape), generator)
        states = []
        for _ in range(T):
            s = _categorical(self.transition_probs[s], generator)
            states.append(s)
        idx = torch.stack(states, -1)
        h = self.emission_fn(self.grid[idx])
        eps = torch.randn(h.shape, generator=generator, dtype=h.dtype, device=h.device)
        return idx, h + matvec(psd_factor(self.emission_cov), eps)

    def filter(self, observations: torch.Tensor) -> BayesianFilterResult:
        """The exact Bayesian filter on the grid (see :func:`~mbrl_course.filters.bayesian_filter`)."""
        return bayesian_filter(self.initial_probs, self.transition_probs, self.emission_log_probs(observations))


__all__ = ["GridSSM", "HiddenMarkovModel", "LinearGaussianSSM", "NonlinearGaussianSSM"]
