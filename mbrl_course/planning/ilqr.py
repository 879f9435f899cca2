"""iLQR: the iterative Linear-Quadratic Regulator on a differentiable model f and cost c.

The slide's GPS row writes ``f_ψ := iterative-Linear-Quadratic-Regulator``: iLQR is not a model but a
*trajectory optimiser* that needs one. Unlike the sampling planners (random shooting, CEM, MPPI), which
only rank the returns of a black-box objective, it differentiates the model and the cost. Notation: the
state x_t is the lecture's i, the control u_t its action u, the cost c = -g its reward read as a cost.
From a start state x_0 it minimises, over controls in the box [low, high],

    J(u_{0:H-1}) = Σ_{t=0}^{H-1} c(x_t, u_t) + c_H(x_H),        x_{t+1} = f(x_t, u_t).

Each iteration works around the nominal trajectory (x̄_{0:H}, ū_{0:H-1}):

1. **Linearise** f and **quadratise** c at every (x̄_t, ū_t) (:func:`linearize`, autograd through
   ``torch.func`` or central finite differences): f_x, f_u, c_x, c_u, c_xx, c_uu, c_ux, c_H,x, c_H,xx.
2. **Backward pass** (:func:`backward_pass`) from V_x = c_H,x, V_xx = c_H,xx at t = H, for t = H-1 … 0::

       Q_x  = c_x  + f_xᵀ V_x'            Q_u  = c_u  + f_uᵀ V_x'
       Q_xx = c_xx + f_xᵀ V_xx' f_x       Q_uu = c_uu + f_uᵀ V_xx' f_u       Q_ux = c_ux + f_uᵀ V_xx' f_x
       Q̃_uu = Q_uu + μ I                                              (Levenberg-Marquardt)
       k_t = argmin_{low - ū_t ≤ δu ≤ high - ū_t}  ½ δuᵀ Q̃_uu δu + δuᵀ Q_u      (:func:`box_qp`)
       K_t = -Q̃_uu,ff⁻¹ Q_ux,f on the free controls f,  0 on the controls clamped at a bound
       V_x  = Q_x  + K_tᵀ Q_uu k_t + K_tᵀ Q_u + Q_uxᵀ k_t
       V_xx = Q_xx + K_tᵀ Q_uu K_t + K_tᵀ Q_ux + Q_uxᵀ K_t
       ΔJ(α) = α Σ_t k_tᵀ Q_u + ½ α² Σ_t k_tᵀ Q_uu k_t                      (predicted change of J)

   iLQR drops DDP's second derivatives of f (the terms V_x'·f_xx, V_x'·f_uu, V_x'·f_ux).
3. **Forward pass** with a line search over α ∈ ``alphas`` (all tried at once, batched)::

       x̂_0 = x_0,   û_t = clip(ū_t + α k_t + K_t (x̂_t - x̄_t), low, high),   x̂_{t+1} = f(x̂_t, û_t)

   accepting the largest α whose actual reduction J - Ĵ is positive and at least ``accept_ratio``
   times the predicted one, -ΔJ(α).
4. **Regularisation schedule** (Tassa, Erez & Todorov 2012): after an accepted step
   Δ ← min(1/Δ₀, Δ/Δ₀), μ ← μΔ (0 once below μ_min); when Q̃_uu is not positive definite or no α
   improves J, Δ ← max(Δ₀, ΔΔ₀), μ ← max(μ_min, μΔ) and the iteration is retried. Past μ_max iLQR gives
   up with an :class:`ILQRError` that says what happened (or, with ``raise_on_failure=False``, stops
   that start state and reports it as not converged).

**Box constraints: control-limited DDP** (Tassa, Mansard & Todorov 2014). The step k_t solves the box
QP above by projected Newton (:func:`box_qp`); the feedback K_t acts only on the controls that are not
clamped at a bound (a clamped control cannot respond to a state deviation), and the forward pass clips.

Everything is batched over B start states (each with its own μ, α and convergence), and runs on any
device. With μ_init = 0 an iteration is an exact Newton step, so on a linear system with a quadratic
cost iLQR reaches the LQR solution in one iteration (``tests/test_ilqr.py`` checks it against Riccati).

For the MPC loop: :class:`ILQRPlanner` plans from a state, warm-started by its previous plan shifted
by one step, and :class:`ILQRMPCAgent` is the MPC loop's agent that uses it (the sampling planners'
``plan(objective)`` interface does not fit: iLQR needs the model and the cost, not a black box).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.func import grad, jacfwd, jacrev, vmap
from tqdm.auto import tqdm

from mbrl_course._checks import (
    as_tensor,
    check_choice,
    check_finite,
    check_positive_float,
    check_positive_int,
    check_shape,
)
from mbrl_course.budget import Tier, by_budget
from mbrl_course.filters._gaussian import matvec
from mbrl_course.planning.base import _as_bounds

__all__ = [
    "BoxQPResult",
    "CostFn",
    "Derivatives",
    "DynamicsFn",
    "ILQRConfig",
    "ILQRError",
    "ILQRMPCAgent",
    "ILQRPlanner",
    "ILQRResult",
    "TerminalCostFn",
    "backward_pass",
    "box_qp",
    "cost_from_reward",
    "ilqr",
    "linearize",
    "model_dynamics",
    "rollout_controls",
    "trajectory_cost",
]

DynamicsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""f(x: (N, n), u: (N, m)) -> x': (N, n), row by row (row r of the output depends on row r only)."""
CostFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""c(x: (N, n), u: (N, m)) -> (N,), differentiable (twice) in x and u."""
TerminalCostFn = Callable[[torch.Tensor], torch.Tensor]
"""c_H(x: (N, n)) -> (N,)."""

DERIVATIVES = ("autograd", "finite_difference")


class ILQRError(RuntimeError):
    """iLQR gave up: the regularisation μ passed μ_max without an improving step, or the cost became NaN."""


@dataclass
class ILQRConfig:
    """Hyperparameters of :func:`ilqr`; :meth:`for_budget` gives a compute tier's."""

    iterations: int = 50
    """At most this many iterations (backward pass + line search) per call."""
    mu_init: float = 0.0
    """μ at the start: 0 makes every step an exact (Gauss-)Newton step."""
    mu_factor: float = 2.0
    """Δ₀ > 1 of the schedule: how fast μ grows after a failure and shrinks after a success."""
    mu_min: float = 1e-6
    """Smallest μ > 0; a decrease below it sets μ = 0."""
    mu_max: float = 1e10
    """iLQR gives up when μ has to grow past this."""
    alphas: tuple[float, ...] = tuple(float(10.0 ** (-3.0 * i / 10)) for i in range(11))
    """Line-search step sizes α (tried together, the largest acceptable one wins): 1 … 10⁻³."""
    accept_ratio: float = 1e-4
    """A step is accepted when J - Ĵ > 0 and (J - Ĵ) ≥ accept_ratio · (-ΔJ(α))."""
    tolerance: float = 1e-7
    """Converged when the predicted or the accepted reduction of J is below tolerance · (1 + |J|)."""
    derivatives: str = "autograd"
    """How f and c are differentiated: "autograd" (torch.func) or "finite_difference" (central)."""
    fd_step: float | None = None
    """Relative finite-difference step h (step h·(1 + |z|)); None: ε^(1/3) for gradients and Jacobians,
    ε^(1/4) for Hessians (ε the dtype's machine epsilon)."""
    raise_on_failure: bool = True
    """On giving up: raise :class:`ILQRError` (True) or stop that start state, not converged (False)."""
    progress: bool = False
    """Show a tqdm bar over the iterations."""

    def __post_init__(self) -> None:
        self.iterations = check_positive_int("iterations", self.iterations)
        self.mu_init = check_positive_float("mu_init", self.mu_init, allow_zero=True)
        self.mu_factor = check_positive_float("mu_factor", self.mu_factor)
        if self.mu_factor <= 1:
            raise ValueError(f"mu_factor: expected a number > 1, got {self.mu_factor}")
        self.mu_min = check_positive_float("mu_min", self.mu_min)
        self.mu_max = check_positive_float("mu_max", self.mu_max)
        if not self.mu_min < self.mu_max or self.mu_init > self.mu_max:
            raise ValueError(f"mu_min, mu_init, mu_max: expected mu_min < mu_max and mu_init <= mu_max, got "
                             f"mu_min={self.mu_min}, mu_init={self.mu_init}, mu_max={self.mu_max}")
        alphas = tuple(float(a) for a in self.alphas)
        if not alphas or not all(0 < a <= 1 for a in alphas):
            raise ValueError(f"alphas: expected a non-empty sequence of step sizes in (0, 1], got {self.alphas!r}")
        self.alphas = tuple(sorted(alphas, reverse=True))
        self.accept_ratio = check_positive_float("accept_ratio", self.accept_ratio, allow_zero=True)
        self.tolerance = check_positive_float("tolerance", self.tolerance, allow_zero=True)
        self.derivatives = check_choice("derivatives", self.derivatives, DERIVATIVES)
        if self.fd_step is not None:
            self.fd_step = check_positive_float("fd_step", self.fd_step)
        for name in ("raise_on_failure", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}: expected True or False, got {getattr(self, name)!r}")

    @classmethod
    def for_budget(cls, tier: Tier | None = None, **overrides: Any) -> ILQRConfig:
        """The config of a compute tier (``budget()`` when None): iterations 10 / 50 / 200."""
        return replace(cls(), iterations=by_budget(smoke=10, default=50, full=200, tier=tier), **overrides)


# --------------------------------------------------------------------------------------------------
# Rollout and cost
# --------------------------------------------------------------------------------------------------


def rollout_controls(dynamics: DynamicsFn, x0: torch.Tensor, actions: torch.Tensor,
                     gains: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> torch.Tensor:
    """x_{t+1} = f(x_t, u_t) from ``x0 (B, n)`` under ``actions (B, H, m)``: states ``(B, H+1, n)``.

    With ``gains`` K ``(B, H, m, n)`` and ``reference`` x̄ ``(B, H+1, n)`` the controls are closed-loop,
    u_t = actions_t + K_t (x_t - x̄_t); the caller clips (see :func:`_forward`). Without, open loop.
    """
    states = [x0]
    for t in range(actions.shape[1]):
        u = actions[:, t]
        if gains is not None:
            u = u + matvec(gains[:, t], states[-1] - reference[:, t])
        states.append(dynamics(states[-1], u))
    return torch.stack(states, dim=1)


def trajectory_cost(cost: CostFn, terminal_cost: TerminalCostFn | None, states: torch.Tensor,
                    actions: torch.Tensor) -> torch.Tensor:
    """J = Σ_{t=0}^{H-1} c(x_t, u_t) + c_H(x_H) of ``states (B, H+1, n)``, ``actions (B, H, m)``: ``(B,)``."""
    batch, horizon, m = actions.shape
    n = states.shape[-1]
    running = cost(states[:, :-1].reshape(batch * horizon, n), actions.reshape(batch * horizon, m))
    total = running.reshape(batch, horizon).sum(1)
    if terminal_cost is not None:
        total = total + terminal_cost(states[:, -1])
    return total


# --------------------------------------------------------------------------------------------------
# Derivatives
# --------------------------------------------------------------------------------------------------


@dataclass
class Derivatives:
    """First derivatives of f and second-order expansion of c along a trajectory (B start states, H steps)."""

    f_x: torch.Tensor | None
    """(B, H, n, n): ∂f/∂x at (x̄_t, ū_t) (None when only the cost was expanded)."""
    f_u: torch.Tensor | None
    """(B, H, n, m): ∂f/∂u (None when only the cost was expanded)."""
    c_x: torch.Tensor
    """(B, H, n)."""
    c_u: torch.Tensor
    """(B, H, m)."""
    c_xx: torch.Tensor
    """(B, H, n, n)."""
    c_uu: torch.Tensor
    """(B, H, m, m)."""
    c_ux: torch.Tensor
    """(B, H, m, n): ∂²c/∂u∂x."""
    terminal_x: torch.Tensor
    """(B, n): ∂c_H/∂x at x̄_H (zeros without a terminal cost)."""
    terminal_xx: torch.Tensor
    """(B, n, n): ∂²c_H/∂x²."""

    def check_finite(self) -> None:
        """Refuse NaN/inf derivatives, naming which."""
        for name, value in vars(self).items():
            if value is not None and not bool(torch.isfinite(value).all()):
                raise ILQRError(f"linearize: the derivative {name} has NaN/inf entries along the nominal "
                                f"trajectory; f or c is not differentiable there (or the trajectory diverged)")


def _row(fn: Callable) -> Callable:
    """The single-row version of a batched function: fn(x (n,), u (m,)) = fn(x[None], u[None])[0]."""
    return lambda *args: fn(*(a.unsqueeze(0) for a in args)).squeeze(0)


def _autograd_derivatives(dynamics, cost, terminal_cost, x, u, xH):
    """Per-row Jacobians and Hessians by ``torch.func``, vmapped over the B·H rows (batch and time)."""
    f_x = f_u = None
    if dynamics is not None:
        f_x, f_u = vmap(jacrev(_row(dynamics), argnums=(0, 1)))(x, u)
    cost_grad = grad(_row(cost), argnums=(0, 1))

    def grad_twice(xr, ur):
        g = cost_grad(xr, ur)
        return g, g

    hess, (c_x, c_u) = vmap(jacfwd(grad_twice, argnums=(0, 1), has_aux=True))(x, u)
    (c_xx, _), (c_ux, c_uu) = hess
    if terminal_cost is None:
        t_x, t_xx = torch.zeros_like(xH), xH.new_zeros(*xH.shape, xH.shape[-1])
    else:
        terminal_grad = grad(_row(terminal_cost))
        t_xx, t_x = vmap(jacfwd(lambda xr: (terminal_grad(xr), terminal_grad(xr)), has_aux=True))(xH)
    return f_x, f_u, c_x, c_u, c_xx, c_uu, c_ux, t_x, t_xx


def _steps(z: torch.Tensor, relative: float) -> torch.Tensor:
    return relative * (1.0 + z.abs())


def _fd_jacobian(fn: Callable, z: torch.Tensor, relative: float) -> torch.Tensor:
    """Central differences of a row-wise ``fn(z (N, d)) -> (N, k)`` or ``(N,)``: ``(N, k, d)`` or ``(N, d)``.

    ∂fn/∂z_j ≈ (fn(z + h_j e_j) - fn(z - h_j e_j)) / (2 h_j), all 2d evaluations in one batched call.
    """
    rows, d = z.shape
    h = _steps(z, relative)  # (N, d)
    shift = torch.diag_embed(h)  # (N, d, d): row j = h_j e_j
    points = torch.cat([z.unsqueeze(1) + shift, z.unsqueeze(1) - shift], dim=1)  # (N, 2d, d)
    out = fn(points.reshape(rows * 2 * d, d))
    out = out.reshape(rows, 2, d, *out.shape[1:])
    diff = (out[:, 0] - out[:, 1]) / (2 * h.reshape(rows, d, *([1] * (out.dim() - 3))))  # (N, d, k...)
    return diff.movedim(1, -1)


def _fd_hessian(fn: Callable, z: torch.Tensor, relative: float) -> torch.Tensor:
    """Central second differences of a row-wise scalar ``fn(z (N, d)) -> (N,)``: ``(N, d, d)``.

    ∂²fn/∂z_i∂z_j ≈ [fn(z + h_i e_i + h_j e_j) - fn(z + h_i e_i - h_j e_j) - fn(z - h_i e_i + h_j e_j)
                     + fn(z - h_i e_i - h_j e_j)] / (4 h_i h_j), all 4d² evaluations in one batched call.
    """
    rows, d = z.shape
    h = _steps(z, relative)
    shift = torch.diag_embed(h)  # (N, d, d)
    signs = z.new_tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # (4, 2)
    si, sj = signs[:, 0].reshape(1, 4, 1, 1, 1), signs[:, 1].reshape(1, 4, 1, 1, 1)
    points = (z.reshape(rows, 1, 1, 1, d) + si * shift.reshape(rows, 1, d, 1, d)
              + sj * shift.reshape(rows, 1, 1, d, d))  # (N, 4, d, d, d)
    values = fn(points.reshape(-1, d)).reshape(rows, 4, d, d)
    second = values[:, 0] - values[:, 1] - values[:, 2] + values[:, 3]
    hess = second / (4 * h.unsqueeze(-1) * h.unsqueeze(-2))
    return 0.5 * (hess + hess.transpose(-1, -2))


def _fd_derivatives(dynamics, cost, terminal_cost, x, u, xH, fd_step):
    n = x.shape[-1]
    eps = torch.finfo(x.dtype).eps
    first = fd_step if fd_step is not None else eps ** (1 / 3)
    second = fd_step if fd_step is not None else eps ** (1 / 4)
    z = torch.cat([x, u], dim=-1)

    def f(zz):
        return dynamics(zz[:, :n], zz[:, n:])

    def c(zz):
        return cost(zz[:, :n], zz[:, n:])

    jac = None if dynamics is None else _fd_jacobian(f, z, first)  # (N, n, n+m)
    gradient = _fd_jacobian(c, z, first)  # (N, n+m)
    hess = _fd_hessian(c, z, second)  # (N, n+m, n+m)
    if terminal_cost is None:
        t_x, t_xx = torch.zeros_like(xH), xH.new_zeros(*xH.shape, n)
    else:
        t_x, t_xx = _fd_jacobian(terminal_cost, xH, first), _fd_hessian(terminal_cost, xH, second)
    f_x, f_u = (None, None) if jac is None else (jac[..., :n], jac[..., n:])
    return (f_x, f_u, gradient[:, :n], gradient[:, n:], hess[:, :n, :n], hess[:, n:, n:],
            hess[:, n:, :n], t_x, t_xx)


def linearize(dynamics: DynamicsFn | None, cost: CostFn, terminal_cost: TerminalCostFn | None, states: torch.Tensor,
              actions: torch.Tensor, *, method: str = "autograd", fd_step: float | None = None) -> Derivatives:
    """f_x, f_u and c's gradient and Hessian at every (x̄_t, ū_t), c_H's at x̄_H.

    ``method="autograd"``: ``vmap(jacrev(f))`` and ``vmap(jacfwd(grad(c)))`` over the B·H rows (every row
    is one (x̄_t, ū_t); f and c are called on single rows, so they must be written row by row: no
    mixing of rows, no ``.item()``). ``"finite_difference"``: central differences (see
    :func:`_fd_jacobian`, :func:`_fd_hessian`), which need only evaluations of f and c.

    Args:
        dynamics: f, or None to expand the cost alone (``f_x``, ``f_u`` are then None).
        states: x̄ ``(B, H+1, n)``; actions: ū ``(B, H, m)``.
    """
    method = check_choice("method", method, DERIVATIVES)
    batch, horizon, m = actions.shape
    n = states.shape[-1]
    x = states[:, :-1].reshape(batch * horizon, n).detach()
    u = actions.reshape(batch * horizon, m).detach()
    xH = states[:, -1].detach()
    if method == "autograd":
        try:
            with torch.enable_grad():
                parts = _autograd_derivatives(dynamics, cost, terminal_cost, x, u, xH)
        except RuntimeError as err:
            raise TypeError(
                f"linearize: torch.func could not differentiate the dynamics or the cost row by row ({err}); "
                f"write them with torch operations on each row (no .item(), numpy, in-place writes into "
                f"the inputs), or use derivatives='finite_difference'") from err
    else:
        with torch.no_grad():
            parts = _fd_derivatives(dynamics, cost, terminal_cost, x, u, xH, fd_step)
    f_x, f_u, c_x, c_u, c_xx, c_uu, c_ux, t_x, t_xx = parts

    def bt(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor.reshape(batch, horizon, *tensor.shape[1:])

    return Derivatives(f_x=bt(f_x), f_u=bt(f_u), c_x=bt(c_x), c_u=bt(c_u), c_xx=bt(c_xx), c_uu=bt(c_uu),
                       c_ux=bt(c_ux), terminal_x=t_x, terminal_xx=t_xx)


# --------------------------------------------------------------------------------------------------
# Box QP (projected Newton) and the backward pass
# --------------------------------------------------------------------------------------------------


@dataclass
class BoxQPResult:
    """The solution of a batch of box-constrained QPs (see :func:`box_qp`)."""

    x: torch.Tensor
    """(B, m): the minimiser."""
    free: torch.Tensor
    """(B, m) bool: the coordinates not clamped at a bound at the solution."""
    cholesky: torch.Tensor
    """(B, m, m): Cholesky factor of H restricted to the free block (identity rows/columns elsewhere)."""
    ok: torch.Tensor
    """(B,) bool: False where H's free block is not positive definite (no solution returned)."""


def _free_block(hessian: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """H with the rows and columns of clamped coordinates replaced by the identity's: (B, m, m)."""
    both = free.unsqueeze(-1) & free.unsqueeze(-2)
    eye = torch.eye(hessian.shape[-1], dtype=hessian.dtype, device=hessian.device)
    return torch.where(both, hessian, eye.expand_as(hessian) * (~free).unsqueeze(-1))


def box_qp(hessian: torch.Tensor, gradient: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
           x0: torch.Tensor | None = None, *, max_iterations: int = 100, min_gradient: float = 1e-12,
           min_relative_improvement: float = 1e-12, armijo: float = 0.1, step_decrease: float = 0.6,
           min_step: float = 1e-22) -> BoxQPResult:
    """min_x ½ xᵀ H x + gᵀ x  subject to  lower ≤ x ≤ upper, by projected Newton (Tassa et al. 2014).

    Each iteration: the clamped set c = {i: x_i = lower_i and ∂_i > 0, or x_i = upper_i and ∂_i < 0}
    with ∂ = g + H x; Newton's step on the free set f, x_f* = -H_ff⁻¹ (g_f + H_fc x_c); a projected
    line search x ← clip(x + s (x* - x)) with s = 1, 0.6, 0.6², … until the Armijo condition
    (q(x_new) - q(x)) ≥ armijo · s · (x* - x)ᵀ∂ holds. Stops when ‖∂_f‖ or the relative improvement is tiny
    or every coordinate is clamped. Batched over B problems (the steps s are all tried at once).

    Args:
        hessian: H ``(B, m, m)`` symmetric; gradient: g ``(B, m)``; lower, upper: ``(B, m)`` with lower ≤ upper.
        x0: starting point ``(B, m)`` (clipped into the box); None: 0 clipped into the box.
    """
    x = (torch.zeros_like(gradient) if x0 is None else x0).clamp(lower, upper)

    def value(z: torch.Tensor) -> torch.Tensor:
        return (gradient.unsqueeze(-2) * z).sum(-1) + 0.5 * (z * (z @ hessian.transpose(-1, -2))).sum(-1)

    steps = step_decrease ** torch.arange(math.ceil(math.log(min_step) / math.log(step_decrease)),
                                          dtype=x.dtype, device=x.device)  # (S,)
    current = value(x.unsqueeze(-2)).squeeze(-1)
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    ok = torch.ones_like(active)
    for _ in range(max_iterations):
        slope = gradient + matvec(hessian, x)  # ∂ = g + H x
        clamped = ((x <= lower) & (slope > 0)) | ((x >= upper) & (slope < 0))
        free = ~clamped
        chol, info = torch.linalg.cholesky_ex(_free_block(hessian, free))
        ok = ok & ~(active & (info != 0))
        active = active & (info == 0) & free.any(-1)
        active = active & ((slope * free).norm(dim=-1) >= min_gradient)
        if not bool(active.any()):
            break
        # x* on the free set: H_ff x_f* = -(g_f + H_fc x_c); zero rhs on the clamped set gives 0 there
        rhs = (gradient + matvec(hessian, x * clamped)) * free
        newton = -torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
        search = (newton - x) * free
        descent = (search * slope).sum(-1)  # (B,)
        active = active & (descent < 0)
        candidates = (x.unsqueeze(-2) + steps.unsqueeze(-1) * search.unsqueeze(-2)).clamp(
            lower.unsqueeze(-2), upper.unsqueeze(-2))  # (B, S, m)
        values = value(candidates)  # (B, S)
        armijo_ok = (values - current.unsqueeze(-1)) <= armijo * steps * descent.unsqueeze(-1)
        found = armijo_ok.any(-1)
        first = armijo_ok.to(torch.int8).argmax(-1)
        new_x = candidates[torch.arange(x.shape[0], device=x.device), first]
        new_value = values.gather(-1, first.unsqueeze(-1)).squeeze(-1)
        take = active & found
        improvement = current - new_value
        x = torch.where(take.unsqueeze(-1), new_x, x)
        current = torch.where(take, new_value, current)
        active = take & (improvement >= min_relative_improvement * current.abs().clamp_min(1e-300))
    slope = gradient + matvec(hessian, x)
    free = ~(((x <= lower) & (slope > 0)) | ((x >= upper) & (slope < 0)))
    chol, info = torch.linalg.cholesky_ex(_free_block(hessian, free))
    return BoxQPResult(x=x, free=free, cholesky=chol, ok=ok & (info == 0))


@dataclass
class BackwardPass:
    """What :func:`backward_pass` returns for B trajectories of H steps."""

    K: torch.Tensor
    """(B, H, m, n) feedback gains."""
    k: torch.Tensor
    """(B, H, m) feed-forward steps."""
    Q_uu: torch.Tensor
    """(B, H, m, m) the unregularised Q_uu (its inverse is the maximum-entropy controller's covariance)."""
    free: torch.Tensor
    """(B, H, m) bool: the controls not clamped at a bound."""
    expected: torch.Tensor
    """(B, 2): (Σ_t k_tᵀ Q_u, ½ Σ_t k_tᵀ Q_uu k_t), so ΔJ(α) = α expected[0] + α² expected[1]."""
    ok: torch.Tensor
    """(B,) bool: False where some Q̃_uu was not positive definite (retry with a larger μ)."""


def backward_pass(d: Derivatives, actions: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                  mu: torch.Tensor) -> BackwardPass:
    """The backward pass of the module docstring (step 2), for all B trajectories at once.

    Args:
        d: the derivatives along the nominal trajectory; actions: ū ``(B, H, m)``;
        low, high: ``(m,)`` the control bounds; mu: μ ``(B,)``.
    """
    batch, horizon, m = actions.shape
    V_x, V_xx = d.terminal_x, d.terminal_xx
    eye = torch.eye(m, dtype=actions.dtype, device=actions.device)
    Ks, ks, Quus, frees = [], [], [], []
    expected = actions.new_zeros(batch, 2)
    ok = torch.ones(batch, dtype=torch.bool, device=actions.device)
    for t in reversed(range(horizon)):
        f_x, f_u = d.f_x[:, t], d.f_u[:, t]
        f_uT = f_u.transpose(-1, -2)
        Q_x = d.c_x[:, t] + matvec(f_x.transpose(-1, -2), V_x)
        Q_u = d.c_u[:, t] + matvec(f_uT, V_x)
        Q_xx = d.c_xx[:, t] + f_x.transpose(-1, -2) @ V_xx @ f_x
        Q_uu = d.c_uu[:, t] + f_uT @ V_xx @ f_u
        Q_ux = d.c_ux[:, t] + f_uT @ V_xx @ f_x
        Q_uu = 0.5 * (Q_uu + Q_uu.transpose(-1, -2))
        Q_uu_reg = Q_uu + mu.reshape(batch, 1, 1) * eye  # Q̃_uu = Q_uu + μ I
        qp = box_qp(Q_uu_reg, Q_u, low - actions[:, t], high - actions[:, t])
        ok = ok & qp.ok
        k = qp.x
        K = -torch.cholesky_solve(Q_ux * qp.free.unsqueeze(-1), qp.cholesky)  # 0 rows on clamped controls
        K_T = K.transpose(-1, -2)
        V_x = Q_x + matvec(K_T @ Q_uu, k) + matvec(K_T, Q_u) + matvec(Q_ux.transpose(-1, -2), k)
        V_xx = Q_xx + K_T @ Q_uu @ K + K_T @ Q_ux + Q_ux.transpose(-1, -2) @ K
        V_xx = 0.5 * (V_xx + V_xx.transpose(-1, -2))
        expected = expected + torch.stack([(k * Q_u).sum(-1), 0.5 * (k * matvec(Q_uu, k)).sum(-1)], dim=-1)
        Ks.append(K)
        ks.append(k)
        Quus.append(Q_uu)
        frees.append(qp.free)
    return BackwardPass(K=torch.stack(Ks[::-1], 1), k=torch.stack(ks[::-1], 1), Q_uu=torch.stack(Quus[::-1], 1),
                        free=torch.stack(frees[::-1], 1), expected=expected, ok=ok)


# --------------------------------------------------------------------------------------------------
# iLQR
# --------------------------------------------------------------------------------------------------


@dataclass
class ILQRResult:
    """The optimised trajectories of B start states, and the local controller around them."""

    states: torch.Tensor
    """(B, H+1, n): x̄_{0:H}."""
    actions: torch.Tensor
    """(B, H, m): ū_{0:H-1}, inside [low, high]."""
    K: torch.Tensor
    """(B, H, m, n): feedback gains of the last backward pass, at the returned trajectory."""
    k: torch.Tensor
    """(B, H, m): feed-forward steps of that pass (≈ 0 at convergence). Local controller:
    u_t = clip(ū_t + k_t + K_t (x_t - x̄_t), low, high)."""
    cost: torch.Tensor
    """(B,): J of the returned trajectory."""
    costs: torch.Tensor
    """(I+1, B): J before the first and after every iteration run (a retried iteration repeats J)."""
    converged: torch.Tensor
    """(B,) bool: stopped by the tolerance (False: out of iterations, or gave up)."""
    iterations: torch.Tensor
    """(B,) long: the number of accepted steps."""
    mu: torch.Tensor
    """(B,): the final regularisation μ."""
    Q_uu: torch.Tensor
    """(B, H, m, m): the unregularised Q_uu of the last backward pass."""
    free: torch.Tensor
    """(B, H, m) bool: controls not clamped at a bound in the last backward pass."""


def _check_function(name: str, fn, args: Sequence[torch.Tensor], expected: tuple, differentiable: bool) -> None:
    """Call ``fn`` once on ``args`` and refuse a wrong type or shape, NaN, or (when asked) no autograd graph."""
    if not callable(fn):
        raise TypeError(f"{name}: expected a callable, got {type(fn).__name__}")
    inputs = [a.detach().clone().requires_grad_(differentiable) for a in args]
    try:
        with torch.enable_grad():
            out = fn(*inputs)
    except RuntimeError as err:
        raise TypeError(f"{name}: calling it on inputs of shapes {[tuple(a.shape) for a in args]} failed: {err}") from err
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name}: expected it to return a torch.Tensor of shape {expected}, got {type(out).__name__}")
    check_shape(f"{name}(...)", out, expected)
    if differentiable and not out.requires_grad:
        raise TypeError(
            f"{name}: its output has no autograd graph back to its inputs, so it cannot be differentiated "
            f"(a .detach(), .item(), numpy or torch.no_grad inside?); write it with torch operations on "
            f"(x, u), or use ILQRConfig(derivatives='finite_difference')")
    if out.is_floating_point() and bool(torch.isnan(out).any()):
        raise ValueError(f"{name}: returned NaN at the initial trajectory (shapes {[tuple(a.shape) for a in args]})")


def _bounds(low, high, m: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """low, high as ``(m,)`` tensors (a float is used for every control), finite, low < high."""
    try:
        low, high = _as_bounds(low, high, dtype, device)
    except (TypeError, ValueError) as err:  # the planners' check, with this function's argument names
        message = str(err).replace("action_low", "low").replace("action_high", "high")
        raise type(err)(message) from err
    if low.shape[0] == 1:
        low, high = low.expand(m), high.expand(m)
    if low.shape[0] != m:
        raise ValueError(f"low: expected a float or {m} bounds, one per control dimension, got {low.shape[0]}")
    return low, high


def _forward(dynamics, cost, terminal_cost, x0, nominal_x, nominal_u, bp: BackwardPass, alphas, low, high):
    """Line search: every α at once. Returns states (A, B, H+1, n), actions (A, B, H, m), costs (A, B)."""
    batch, horizon, m = nominal_u.shape
    n_alpha = alphas.shape[0]
    # rows (α, b): x̂_0 = x_0, û_t = clip(ū_t + α k_t + K_t (x̂_t - x̄_t)), x̂_{t+1} = f(x̂_t, û_t)
    x = x0.repeat(n_alpha, 1)
    K = bp.K.repeat(n_alpha, 1, 1, 1)
    feedforward = (nominal_u.unsqueeze(0) + alphas.reshape(-1, 1, 1, 1) * bp.k.unsqueeze(0)).reshape(-1, horizon, m)
    reference = nominal_x.repeat(n_alpha, 1, 1)
    states, actions = [x], []
    for t in range(horizon):
        u = (feedforward[:, t] + matvec(K[:, t], x - reference[:, t])).clamp(low, high)
        x = dynamics(x, u)
        states.append(x)
        actions.append(u)
    states_t, actions_t = torch.stack(states, 1), torch.stack(actions, 1)
    costs = trajectory_cost(cost, terminal_cost, states_t, actions_t)
    return (states_t.reshape(n_alpha, batch, horizon + 1, -1), actions_t.reshape(n_alpha, batch, horizon, m),
            costs.reshape(n_alpha, batch))


def ilqr(dynamics: DynamicsFn, cost: CostFn, x0, u_init, low, high, config: ILQRConfig | None = None, *,
         terminal_cost: TerminalCostFn | None = None) -> ILQRResult:
    """Minimise J(u_{0:H-1}) = Σ_t c(x_t, u_t) + c_H(x_H) from each of B start states (see the module docstring).

    Args:
        dynamics: f(x (N, n), u (N, m)) -> x' (N, n), differentiable and row by row; a model of the
            contract through :func:`model_dynamics`, an env's true dynamics through ``dynamics_fn``.
        cost: c(x (N, n), u (N, m)) -> (N,), twice differentiable (e.g. :func:`cost_from_reward`).
        x0: start states ``(B, n)`` (or ``(n,)`` for B = 1).
        u_init: initial controls ``(B, H, m)`` (or ``(H, m)``, shared by all B), clipped into the box.
        low, high: the control bounds, floats or ``(m,)``, low < high.
        config: :class:`ILQRConfig` (None: the defaults).
        terminal_cost: c_H(x (N, n)) -> (N,), or None for none.
    Returns:
        :class:`ILQRResult`.
    Raises:
        ILQRError: when μ passes μ_max without an improving step (unless ``raise_on_failure=False``),
            or the derivatives are NaN. ValueError/TypeError: for bad inputs (each named).
    """
    config = ILQRConfig() if config is None else config
    if not isinstance(config, ILQRConfig):
        raise TypeError(f"config: expected an ILQRConfig, got {type(config).__name__}")
    u_init = as_tensor("u_init", u_init)
    if not u_init.is_floating_point():
        u_init = u_init.to(torch.get_default_dtype())
    x0 = as_tensor("x0", x0, dtype=u_init.dtype, device=u_init.device)
    if x0.dim() == 1:
        x0 = x0.unsqueeze(0)
    if x0.dim() != 2 or x0.shape[1] == 0:
        raise ValueError(f"x0: expected start states of shape (B, n), got {tuple(x0.shape)}")
    batch, n = x0.shape
    if u_init.dim() == 2:
        u_init = u_init.expand(batch, *u_init.shape)
    if u_init.dim() != 3 or u_init.shape[0] != batch:
        raise ValueError(f"u_init: expected controls of shape (B={batch}, H, m) or (H, m), got {tuple(u_init.shape)}")
    if u_init.shape[1] == 0:
        raise ValueError("u_init: expected a horizon H >= 1, got H = 0 (shape "
                         f"{tuple(u_init.shape)}); iLQR needs at least one control to optimise")
    m = u_init.shape[2]
    check_finite("x0", x0)
    check_finite("u_init", u_init)
    low, high = _bounds(low, high, m, u_init.dtype, u_init.device)
    differentiable = config.derivatives == "autograd"
    _check_function("dynamics", dynamics, (x0, u_init[:, 0]), (batch, n), differentiable)
    _check_function("cost", cost, (x0, u_init[:, 0]), (batch,), differentiable)
    if terminal_cost is not None:
        _check_function("terminal_cost", terminal_cost, (x0,), (batch,), differentiable)

    with torch.no_grad():
        actions = u_init.clamp(low, high).clone()
        states = rollout_controls(dynamics, x0, actions)
        J = trajectory_cost(cost, terminal_cost, states, actions)
    if not bool(torch.isfinite(J).all()):
        bad = (~torch.isfinite(J)).nonzero().flatten().tolist()
        raise ValueError(f"u_init: the cost J of the initial trajectory is NaN/inf for start state(s) {bad}; "
                         f"start from controls (or states) where the model and the cost are finite")
    alphas = torch.tensor(config.alphas, dtype=J.dtype, device=J.device)
    mu = torch.full_like(J, config.mu_init)
    delta = torch.ones_like(J)  # Δ of the schedule
    done = torch.zeros(batch, dtype=torch.bool, device=J.device)  # converged or given up
    converged = torch.zeros_like(done)
    accepted = torch.zeros(batch, dtype=torch.long, device=J.device)
    history = [J.clone()]
    d = linearize(dynamics, cost, terminal_cost, states, actions, method=config.derivatives, fd_step=config.fd_step)
    d.check_finite()

    def give_up(which: torch.Tensor, what: str) -> None:
        nonlocal done
        if not bool(which.any()):
            return
        if config.raise_on_failure:
            raise ILQRError(
                f"ilqr: gave up on start state(s) {which.nonzero().flatten().tolist()}: {what}; μ rose past "
                f"mu_max={config.mu_max:g} (costs there: {J[which].tolist()}). Check that the cost is "
                f"differentiable along the trajectory, raise mu_max, or pass raise_on_failure=False")
        done = done | which

    bar = tqdm(total=config.iterations, desc="iLQR", disable=not config.progress, leave=False)
    for iteration in range(config.iterations + 1):
        # backward pass, raising μ where Q̃_uu is not positive definite
        while True:
            bp = backward_pass(d, actions, low, high, mu)
            failed = ~bp.ok & ~done
            if not bool(failed.any()):
                break
            delta = torch.where(failed, torch.clamp(delta * config.mu_factor, min=config.mu_factor), delta)
            mu = torch.where(failed, torch.clamp(mu * delta, min=config.mu_min), mu)
            give_up(failed & (mu > config.mu_max), "Q_uu + μI is not positive definite")
        predicted = -(bp.expected[:, 0] + bp.expected[:, 1])  # -ΔJ(1)
        small = predicted < config.tolerance * (1 + J.abs())
        converged = converged | (small & ~done)
        done = done | small
        if iteration == config.iterations or bool(done.all()):
            break
        # forward pass with line search
        with torch.no_grad():
            new_x, new_u, new_J = _forward(dynamics, cost, terminal_cost, x0, states, actions, bp, alphas, low, high)
        reduction = J.unsqueeze(0) - new_J  # (A, B)
        expected = -(alphas.unsqueeze(-1) * bp.expected[:, 0] + alphas.unsqueeze(-1) ** 2 * bp.expected[:, 1])
        good = torch.isfinite(new_J) & (reduction > 0) & (reduction >= config.accept_ratio * expected)
        take = good.any(0) & ~done
        best = good.to(torch.int8).argmax(0)  # the largest acceptable α (alphas are sorted downwards)
        pick = torch.arange(batch, device=J.device)
        gain = torch.where(take, reduction[best, pick], torch.zeros_like(J))
        states = torch.where(take.reshape(-1, 1, 1), new_x[best, pick], states)
        actions = torch.where(take.reshape(-1, 1, 1), new_u[best, pick], actions)
        J = torch.where(take, new_J[best, pick], J)
        accepted += take.long()
        # the schedule: shrink μ after a success, grow it after a failure
        fail = ~take & ~done
        delta = torch.where(take, torch.clamp(delta / config.mu_factor, max=1 / config.mu_factor), delta)
        shrunk = mu * delta
        mu = torch.where(take, torch.where(shrunk > config.mu_min, shrunk, torch.zeros_like(mu)), mu)
        delta = torch.where(fail, torch.clamp(delta * config.mu_factor, min=config.mu_factor), delta)
        mu = torch.where(fail, torch.clamp(mu * delta, min=config.mu_min), mu)
        history.append(J.clone())
        bar.update(1)
        tiny = take & (gain < config.tolerance * (1 + J.abs()))
        converged = converged | tiny
        done = done | tiny
        give_up(fail & (mu > config.mu_max), "no step size α reduced the cost (or every trial was NaN)")
        if bool(take.any()):
            d = linearize(dynamics, cost, terminal_cost, states, actions, method=config.derivatives,
                          fd_step=config.fd_step)
            d.check_finite()
    bar.close()
    return ILQRResult(states=states, actions=actions, K=bp.K, k=bp.k, cost=J, costs=torch.stack(history),
                      converged=converged, iterations=accepted, mu=mu, Q_uu=bp.Q_uu, free=bp.free)


# --------------------------------------------------------------------------------------------------
# Adapters: a model of the contract, an env's reward
# --------------------------------------------------------------------------------------------------


def model_dynamics(model, *, propagation: str = "expectation") -> DynamicsFn:
    """f(x, u) := a model's deterministic next state, through its :class:`~mbrl_course.models.Propagator`.

    ``TrueDynamics`` gives the env's equations, ``DeltaMLP`` i + f_ψ(i, u), a ``GaussianEnsemble`` under
    ``propagation="expectation"`` the members' mean. The propagator's step is differentiable (the
    rollout contract), which iLQR needs; a stochastic propagation is refused. Build it again after the
    model is refit (a propagator may hold the weights of the moment it was made).
    """
    propagator = model.propagator(propagation=propagation)
    if not propagator.deterministic:
        raise ValueError(f"model: iLQR needs a deterministic f(x, u), but {type(model).__name__}'s propagator "
                         f"for propagation={propagation!r} samples; use propagation='expectation' (the mean)")

    def dynamics(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return propagator.step(x, u)[0]

    return dynamics


def cost_from_reward(reward_fn: Callable, dynamics: DynamicsFn) -> CostFn:
    """c(x, u) := -g(x, u, f(x, u)): an env's reward (``mbrl_course.envs.reward_fn``) read as a cost."""

    def cost(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return -reward_fn(x, u, dynamics(x, u))

    return cost


# --------------------------------------------------------------------------------------------------
# iLQR-MPC
# --------------------------------------------------------------------------------------------------


class ILQRPlanner:
    """iLQR as planning-algo(f, i): ``plan(state) -> (H, m)``, warm-started by the previous plan shifted.

    Not a :class:`~mbrl_course.planning.Planner` (those maximise a black-box objective of action
    sequences): it takes the dynamics and the cost. The first plan (and every plan after ``reset()``)
    starts from ``u_init`` (default: the middle of the bounds); every later one from
    ū^prev_{1:H-1} followed by ū^prev_{H-1} (the previous plan shifted by one step, its last control
    repeated). ``last`` holds the last :class:`ILQRResult`.

    Args:
        dynamics, cost, terminal_cost: as for :func:`ilqr`.
        horizon: H; action_low, action_high: the control bounds.
        config: :class:`ILQRConfig` (None: :meth:`ILQRConfig.for_budget`); ``raise_on_failure`` is
            forced off, so that a hard state makes the controller act on its best plan, not stop.
        u_init: ``(H, m)`` initial controls for the first plan.
        dtype, device: where plans are computed.
    """

    def __init__(self, dynamics: DynamicsFn, cost: CostFn, horizon: int, action_low, action_high, *,
                 terminal_cost: TerminalCostFn | None = None, config: ILQRConfig | None = None,
                 u_init=None, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> None:
        self.dynamics, self.cost, self.terminal_cost = dynamics, cost, terminal_cost
        self.horizon = check_positive_int("horizon", horizon)
        self.dtype, self.device = dtype, torch.device(device)
        self.action_low, self.action_high = _as_bounds(action_low, action_high, dtype, self.device)
        self.action_dim = int(self.action_low.shape[0])
        self.config = replace(ILQRConfig.for_budget() if config is None else config, raise_on_failure=False)
        middle = ((self.action_low + self.action_high) / 2).expand(self.horizon, self.action_dim)
        self.u_init = middle.clone() if u_init is None else as_tensor("u_init", u_init, dtype=dtype, device=self.device)
        check_shape("u_init", self.u_init, (self.horizon, self.action_dim))
        self._previous: torch.Tensor | None = None
        self.last: ILQRResult | None = None

    def initial_controls(self) -> torch.Tensor:
        """(H, m): where the next plan starts (u_init, or the previous plan shifted by one step)."""
        if self._previous is None:
            return self.u_init.clone()
        return torch.cat([self._previous[1:], self._previous[-1:]], dim=0)

    def plan(self, state) -> torch.Tensor:
        """Optimise the controls from ``state (n,)``; return the plan ``(H, m)`` (execute its first row)."""
        state = as_tensor("state", state, dtype=self.dtype, device=self.device)
        if state.dim() != 1:
            raise ValueError(f"state: expected one state of shape (n,), got {tuple(state.shape)}")
        self.last = ilqr(self.dynamics, self.cost, state.unsqueeze(0), self.initial_controls().unsqueeze(0),
                         self.action_low, self.action_high, self.config, terminal_cost=self.terminal_cost)
        self._previous = self.last.actions[0].detach().clone()
        return self._previous.clone()

    def reset(self) -> None:
        """Forget the previous plan (start of an episode)."""
        self._previous = None


class ILQRMPCAgent:
    """The MPC loop's agent with iLQR as planning-algo: u := first control of iLQR's plan from i.

    An agent for :func:`~mbrl_course.agents.mpc_loop` / :func:`~mbrl_course.agents.run_episode` (act,
    reset, update), like :class:`~mbrl_course.agents.MPCAgent`, but planning with :class:`ILQRPlanner`
    on f := :func:`model_dynamics` (model) and c := -reward (:func:`cost_from_reward`). ``update``
    refits the model on D_real (``model.fit``; nothing for ``TrueDynamics``) and rebuilds f.

    Args:
        model: a dynamics model of the contract with a deterministic propagator.
        reward_fn: the env's batched reward g(i, u, i').
        horizon, action_low, action_high, config, terminal_cost: as for :class:`ILQRPlanner`.
        fit_kwargs: options for ``model.fit``.

    Plans run in the model's dtype and on its device (``TrueDynamics(..., dtype=torch.float64)`` for
    precise derivatives).
    """

    def __init__(self, model, reward_fn: Callable, horizon: int, action_low, action_high, *,
                 config: ILQRConfig | None = None, terminal_cost: TerminalCostFn | None = None,
                 fit_kwargs: dict[str, Any] | None = None) -> None:
        self.model, self.reward_fn = model, reward_fn
        self.fit_kwargs = dict(fit_kwargs or {})
        self.planner = ILQRPlanner(self._dynamics, self._cost, horizon, action_low, action_high,
                                   terminal_cost=terminal_cost, config=config, dtype=model.dtype, device=model.device)
        self._f = model_dynamics(model)
        self.last_fit = None

    def _dynamics(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self._f(x, u)

    def _cost(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return -self.reward_fn(x, u, self._dynamics(x, u))

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Plan from ``obs (n,)`` and return the first control of the plan ``(m,)`` (float32)."""
        obs = np.asarray(obs, dtype=np.float64)  # planned in the model's dtype
        if not np.isfinite(obs).all():
            raise ValueError(f"obs: expected a finite state to plan from, got {obs}")
        return self.planner.plan(obs)[0].cpu().numpy().astype(np.float32)

    def reset(self) -> None:
        """Start of an episode: forget the warm start."""
        self.planner.reset()

    def update(self, buffer):
        """ψ := argmin_ψ L(f_ψ, D_real) (``model.fit``), then rebuild f from the refit model."""
        self.last_fit = self.model.fit(buffer, **self.fit_kwargs)
        self._f = model_dynamics(self.model)
        return self.last_fit

    def evaluation_actor(self) -> ILQRMPCAgent:
        """The controller itself acts in evaluation episodes."""
        return self

    def state_dict(self) -> dict[str, Any]:
        """The model's parameters (iLQR keeps no random state)."""
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self._f = model_dynamics(self.model)

