"""The slide's "Bayesian Kalman filter": E_t and F_t follow learnable ODEs between observation times.

    dE_t = f_θe(E_t) dt,   dF_t = g_θf(F_t) dt

E_t and F_t at the observation times t_1 < ... < t_T are obtained by integrating these ODEs from
(E_0, F_0) at t_0 with torchdiffeq's ``odeint`` (a maintained adaptive Runge–Kutta solver), then fed
to the Kalman filter; autograd differentiates through the solver, so log p(Y_{1:T} | θ) is
differentiable in θ_e, θ_f, E_0, F_0, C, D, m_0 and S_0.

F_t must stay symmetric positive (semi-)definite. Integrating F directly lets the solver's
round-off (and any g that is not exactly symmetric) break that; instead we integrate its Cholesky
factor L_t (F_t = L_t L_tᵀ) with

    dL_t/dt = L_t Φ(L_t⁻¹ G L_t⁻ᵀ),   G = sym(g_θf(L_t L_tᵀ)),   Φ(M) = tril(M, -1) + ½ diag(M),

for which d(L Lᵀ)/dt = L (Φ(M) + Φ(M)ᵀ) Lᵀ = L M Lᵀ = G: L_t L_tᵀ solves dF = g(F) dt exactly, and is
symmetric positive semi-definite by construction. Only the symmetric part of g's output enters
(a covariance's derivative is symmetric). The factor ODE needs F_t to stay nonsingular, which any g
that keeps F_t positive definite guarantees; a g that drives F_t to singularity makes the adaptive
solver's steps shrink without end.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from mbrl_course._checks import as_tensor, check_positive_float
from mbrl_course.filters._validate import check_covariance, like
from mbrl_course.filters.kalman import KalmanFilterResult, kalman_filter, method_from_parallel
from mbrl_course.filters.params import LinearGaussianSSM, positive_definite, positive_definite_inverse

MatrixField = Callable[[torch.Tensor], torch.Tensor]
ADAPTIVE_METHODS = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")


class LinearMatrixField(nn.Module):
    """f(M) = A M, a learnable linear field: its flow is M_t = expm(A t) M_0."""

    def __init__(self, matrix: torch.Tensor) -> None:
        super().__init__()
        self.matrix = nn.Parameter(matrix.detach().clone())

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """``state: (..., n, n)`` -> A M ``(..., n, n)``."""
        return self.matrix @ state


class LyapunovField(nn.Module):
    """g(M) = A M + M Aᵀ + Q Qᵀ: keeps a covariance symmetric positive definite.

    With Q = 0 its flow is M_t = expm(A t) M_0 expm(A t)ᵀ. ``noise_factor`` Q is optional.
    """

    def __init__(self, matrix: torch.Tensor, noise_factor: torch.Tensor | None = None) -> None:
        super().__init__()
        self.matrix = nn.Parameter(matrix.detach().clone())
        self.noise_factor = None if noise_factor is None else nn.Parameter(noise_factor.detach().clone())

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """``state: (..., n, n)`` -> ``(..., n, n)``."""
        out = self.matrix @ state + state @ self.matrix.mT
        if self.noise_factor is not None:
            out = out + self.noise_factor @ self.noise_factor.mT
        return out


class MLPMatrixField(nn.Module):
    """f(M) = reshape(MLP(vec M)): a small tanh network as a general matrix field."""

    def __init__(self, size: int, hidden: int = 32, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.size = size
        self.net = nn.Sequential(
            nn.Linear(size * size, hidden, dtype=dtype), nn.Tanh(), nn.Linear(hidden, size * size, dtype=dtype)
        )
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """``state: (..., n, n)`` -> ``(..., n, n)``."""
        flat = state.reshape(state.shape[:-2] + (self.size * self.size,))
        return self.net(flat).reshape(state.shape)


def _phi(m: torch.Tensor) -> torch.Tensor:
    """Φ(M) = tril(M, -1) + ½ diag(M)."""
    return torch.tril(m, -1) + 0.5 * torch.diag_embed(torch.diagonal(m, dim1=-2, dim2=-1))


class _ParameterFlow(nn.Module):
    """The vector field of (E, L): dE/dt = f(E), dL/dt = L Φ(L⁻¹ sym(g(L Lᵀ)) L⁻ᵀ)."""

    def __init__(self, transition_field: MatrixField, noise_field: MatrixField) -> None:
        super().__init__()
        self.transition_field = transition_field
        self.noise_field = noise_field

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        E, L = state
        dE = self.transition_field(E)
        G = self.noise_field(L @ L.mT)
        G = 0.5 * (G + G.mT)
        X = torch.linalg.solve_triangular(L, G, upper=False)  # L⁻¹ G
        M = torch.linalg.solve_triangular(L, X.mT, upper=False)  # L⁻¹ G L⁻ᵀ (G symmetric)
        return dE, L @ _phi(M)


class ODEParameterDynamics(nn.Module):
    """E_t, F_t from dE_t = f_θe(E_t) dt, dF_t = g_θf(F_t) dt, started at (E_0, F_0) at ``start_time``.

    ``transition_field`` f_θe and ``noise_field`` g_θf map ``(..., dx, dx)`` to ``(..., dx, dx)``
    (modules such as :class:`LinearMatrixField`, :class:`LyapunovField`, :class:`MLPMatrixField`,
    or plain callables). ``initial_transition_matrix`` E_0: (..., dx, dx); ``initial_transition_cov``
    F_0: (..., dx, dx), positive definite, stored as a log-Cholesky factor. ``learn_initial`` makes
    E_0 and F_0 trainable. F_t is integrated through its Cholesky factor (see the module docstring),
    so it stays symmetric positive semi-definite. ``method``, ``rtol``, ``atol`` and ``options``
    (e.g. ``{"step_size": 0.1}`` for the fixed-step ``"rk4"``) go to ``torchdiffeq.odeint``; ``adjoint=True`` uses ``odeint_adjoint`` (constant memory in the number
    of solver steps; needs module fields). Adaptive methods stop after ``options["max_num_steps"]``
    (default 2 000) steps with a ``FloatingPointError`` instead of grinding on an exploding flow.
    """

    def __init__(
        self,
        transition_field: MatrixField,
        noise_field: MatrixField,
        initial_transition_matrix: torch.Tensor,
        initial_transition_cov: torch.Tensor,
        learn_initial: bool = True,
        method: str = "dopri5",
        rtol: float = 1e-7,
        atol: float = 1e-9,
        adjoint: bool = False,
        options: dict | None = None,
    ) -> None:
        super().__init__()
        E0 = as_tensor("initial_transition_matrix", initial_transition_matrix)
        F0 = as_tensor("initial_transition_cov", initial_transition_cov, dtype=E0.dtype)
        if not E0.is_floating_point():
            raise TypeError(f"initial_transition_matrix: expected a floating-point tensor, got {E0.dtype}")
        if E0.ndim < 2 or E0.shape[-1] != E0.shape[-2]:
            raise ValueError(f"initial_transition_matrix (E_0): expected shape (..., dx, dx), got {tuple(E0.shape)}")
        if F0.shape[-2:] != E0.shape[-2:]:
            raise ValueError(
                f"initial_transition_cov (F_0): expected shape (..., {E0.shape[-1]}, {E0.shape[-1]}), "
                f"got {tuple(F0.shape)}"
            )
        check_covariance("initial_transition_cov (F_0)", F0, definite=True)
        self.flow = _ParameterFlow(transition_field, noise_field)
        E0 = E0.detach().clone()
        L0 = positive_definite_inverse(F0.detach())
        if learn_initial:
            self.initial_transition_matrix = nn.Parameter(E0)
            self.initial_transition_cov_unconstrained = nn.Parameter(L0)
        else:
            self.register_buffer("initial_transition_matrix", E0)
            self.register_buffer("initial_transition_cov_unconstrained", L0)
        self.method = method
        self.rtol = check_positive_float("rtol", rtol)
        self.atol = check_positive_float("atol", atol)
        self.adjoint = adjoint
        self.options = dict(options or {})
        if method in ADAPTIVE_METHODS:
            self.options.setdefault("max_num_steps", 2_000)

    @property
    def initial_transition_cov(self) -> torch.Tensor:
        """F_0."""
        return positive_definite(self.initial_transition_cov_unconstrained)

    def forward(self, times: torch.Tensor, start_time: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """E_{t_k} = E_0 + ∫_{t_0}^{t_k} f_θe(E_τ) dτ and F_{t_k} = F_0 + ∫_{t_0}^{t_k} g_θf(F_τ) dτ.

        ``times: (T,)`` strictly increasing observation times after ``start_time`` t_0.
        Returns ``(E: (..., T, dx, dx), F: (..., T, dx, dx))``.
        """
        E0 = self.initial_transition_matrix
        t = as_tensor("times", times, dtype=E0.dtype, device=E0.device)
        if t.ndim != 1 or t.shape[0] == 0:
            raise ValueError(f"times: expected shape (T,) with T >= 1, got {tuple(t.shape)}")
        t0 = torch.as_tensor([start_time], dtype=E0.dtype, device=E0.device)
        grid = torch.cat([t0, t])
        if not bool((grid[1:] > grid[:-1]).all()):
            raise ValueError("times: expected strictly increasing times, all after start_time")
        L0 = torch.tril(self.initial_transition_cov_unconstrained, -1) + torch.diag_embed(
            torch.diagonal(self.initial_transition_cov_unconstrained, dim1=-2, dim2=-1).exp()
        )
        solver = odeint_adjoint if self.adjoint else odeint
        try:
            E, L = solver(self.flow, (E0, L0), grid, rtol=self.rtol, atol=self.atol, method=self.method,
                          options=self.options)
        except AssertionError as err:  # torchdiffeq's max_num_steps / underflow guards
            raise FloatingPointError(
                f"ODEParameterDynamics: the solver gave up ({err}); f_θe or g_θf make E_t or F_t explode, "
                "or drive F_t to singularity, between the observation times"
            ) from err
        E, L = E[1:], L[1:]
        F = L @ L.mT
        return E.movedim(0, -3), F.movedim(0, -3)


def bayesian_kalman_filter(
    observations: torch.Tensor,
    initial_mean: torch.Tensor,
    initial_cov: torch.Tensor,
    dynamics: ODEParameterDynamics,
    emission_matrix: torch.Tensor,
    emission_cov: torch.Tensor,
    times: torch.Tensor | None = None,
    start_time: float = 0.0,
    controls: torch.Tensor | None = None,
    control_matrix: torch.Tensor | None = None,
    parallel: bool | None = None,
) -> KalmanFilterResult:
    """The slide's Bayesian Kalman filter: roll out the parameter dynamics, then filter.

    Input Y_{1:T}, p(s_0) = N(m_0, S_0), θ = {θ_e, θ_f, C, D}, E_0, F_0. For t = 1..T:

    - E_t = E_{t-1} + ∫_{t-1}^{t} f_θe(E_τ) dτ,  F_t = F_{t-1} + ∫_{t-1}^{t} g_θf(F_τ) dτ   (roll out)
    - p(s_t | Y_{1:t-1}) = N(μ_t, Σ_t),  Σ_t = F_t + E_t S_{t-1} E_tᵀ,  μ_t = E_t m_{t-1}
    - p(y_t | Y_{1:t-1}) = N(u_t, V_t),  V_t = D + C Σ_t Cᵀ,  u_t = C μ_t
    - p(s_t | Y_{1:t}) = N(m_t, S_t),  S_t = (Σ_t⁻¹ + Cᵀ D⁻¹ C)⁻¹,  m_t = S_t (Cᵀ D⁻¹ y_t + Σ_t⁻¹ μ_t)

    ``times: (T,)`` are the observation times t_k (default 1, 2, ..., T: unit steps), ``start_time``
    the time of s_0. ``dynamics`` gives E_{t_k}, F_{t_k} (see :class:`ODEParameterDynamics`); the rest
    of the arguments and the result are those of :func:`~mbrl_course.filters.kalman_filter`
    (``parallel``: True runs the parallel-in-time scan, False the sequential loop, None lets
    ``kalman_filter``'s ``method="auto"`` choose). Differentiable end to end.
    """
    if not isinstance(dynamics, ODEParameterDynamics):
        raise TypeError(f"dynamics: expected an ODEParameterDynamics, got {type(dynamics).__name__}")
    y = observations if isinstance(observations, torch.Tensor) else as_tensor("observations", observations)
    if y.ndim < 2:
        raise ValueError(f"observations: expected shape (..., T, dy), got {tuple(y.shape)}")
    T = y.shape[-2]
    if T == 0:
        raise ValueError("observations: expected at least one time step (T >= 1), got T = 0")
    ref = dynamics.initial_transition_matrix
    if times is None:
        times = torch.arange(1, T + 1, dtype=ref.dtype, device=ref.device) + start_time
    else:
        times = like("times", times, ref)
        if times.shape != (T,):
            raise ValueError(f"times: expected shape (T,) = ({T},), got {tuple(times.shape)}")
    E, F = dynamics(times, start_time)
    if (controls is None) != (control_matrix is None):
        raise ValueError("controls, control_matrix: give both or neither (the control term is B u_t)")
    if not isinstance(initial_mean, torch.Tensor):
        initial_mean = as_tensor("initial_mean (m_0)", initial_mean, dtype=ref.dtype, device=ref.device)
    params = LinearGaussianSSM(initial_mean, initial_cov, E, F, emission_matrix, emission_cov, control_matrix)
    return kalman_filter(params, y, controls, method=method_from_parallel(parallel))


class BayesianKalmanFilter(nn.Module):
    """Learnable θ = {m_0, S_0, θ_e, θ_f, E_0, F_0, C, D} of the Bayesian Kalman filter, for :func:`fit`.

    Parameter names for ``fit(trainable=...)``: ``initial_mean``, ``initial_cov``, ``emission_matrix``,
    ``emission_cov`` and ``dynamics`` (everything of the :class:`ODEParameterDynamics`, or e.g.
    ``dynamics.flow.transition_field`` for f_θe alone). Fit it with Adam and a small learning rate
    (``FitConfig(optimizer="adam", learning_rate=0.05)``): L-BFGS's line search readily tries fields whose
    flows explode over the observation window, which the solver then refuses.
    """

    def __init__(
        self,
        dynamics: ODEParameterDynamics,
        initial_mean: torch.Tensor,
        initial_cov: torch.Tensor,
        emission_matrix: torch.Tensor,
        emission_cov: torch.Tensor,
    ) -> None:
        super().__init__()
        self.dynamics = dynamics
        check_covariance("initial_cov (S_0)", initial_cov, definite=True)
        check_covariance("emission_cov (D)", emission_cov, definite=True)
        self.initial_mean = nn.Parameter(initial_mean.detach().clone())
        self.initial_cov_unconstrained = nn.Parameter(positive_definite_inverse(initial_cov.detach()))
        self.emission_matrix = nn.Parameter(emission_matrix.detach().clone())
        self.emission_cov_unconstrained = nn.Parameter(positive_definite_inverse(emission_cov.detach()))

    def filter(self, observations: torch.Tensor, times: torch.Tensor | None = None, start_time: float = 0.0,
               parallel: bool | None = None) -> KalmanFilterResult:
        """:func:`bayesian_kalman_filter` under the current θ."""
        return bayesian_kalman_filter(
            observations, self.initial_mean, positive_definite(self.initial_cov_unconstrained), self.dynamics,
            self.emission_matrix, positive_definite(self.emission_cov_unconstrained), times, start_time,
            parallel=parallel,
        )

    def log_likelihood(self, observations: torch.Tensor, times: torch.Tensor | None = None,
                       start_time: float = 0.0, parallel: bool | None = None) -> torch.Tensor:
        """log p(Y_{1:T} | θ): (...)."""
        return self.filter(observations, times, start_time, parallel).log_likelihood


__all__ = [
    "BayesianKalmanFilter",
    "LinearMatrixField",
    "LyapunovField",
    "MLPMatrixField",
    "ODEParameterDynamics",
    "bayesian_kalman_filter",
]
