"""PILCO: Probabilistic Inference for Learning Control (Deisenroth & Rasmussen, 2011).

The lecture's [Dyna] recipe:

    i' = f_ψ(i, u) := p(i' | i, u) = GP
    policy-iteration-algo := DPG / moment matching

inside the generic :func:`mbrl_course.agents.dyna.dyna_loop`, one trial (episode) at a time: one random
trial, then repeat { trial with μ_θ → refit the GP on D_real → optimise θ in the GP }.

**The state PILCO propagates.** The GP (:class:`~mbrl_course.models.GPDynamics`) predicts the change of
z = the observation with each (cos θ, sin θ) pair replaced by the angle θ (cart-pole: z = (x, ẋ, θ, θ̇));
its inputs are the observation x = φ(z) and the action. One moment-matched step from p(z_t) = N(m_t, S_t):

    p(x_t)             = N(E[φ(z_t)], Cov[φ(z_t)])                 exact trig moments (``trig_features``)
    p(u_t)             = N(E[π(x_t)], Cov[π(x_t)])                  the controller's exact moments, u = u_max sin(ũ)
    p(Δ_t)            ≈ N(μ_Δ, Σ_Δ + diag σ²_ε)                     the GP at the Gaussian input (x_t, u_t), exact moments
    Cov[z_t, Δ_t]     = Cov[z_t, (x_t, u_t)] C_GP                  cross-covariances chained by the input gains C = Σ⁻¹Cov
    m_{t+1}           = m_t + μ_Δ
    S_{t+1}           = S_t + Σ_Δ + Cov[z_t, Δ_t] + Cov[z_t, Δ_t]ᵀ
    E[c(x_{t+1})]     = 1 − |I + Σ_x W|^{-1/2} exp(−½ (μ_x − x*)ᵀ W (I + Σ_x W)⁻¹ (μ_x − x*))

and the policy's objective J(θ) = Σ_{t=1}^{H} E[c(x_t)]. Its gradient dJ/dθ is the analytic one, by
autograd through every moment above (PILCO derives the same chain rule by hand); θ is optimised by
scipy's L-BFGS-B (PILCO's own optimiser is a conjugate-gradient/BFGS minimiser with line search:
deterministic J and exact gradients make a quasi-Newton method the natural choice, and it needs no
learning rate).

**Through the rollout primitive.** A moment-matched rollout is :func:`~mbrl_course.models.rollout` on a
*belief* model: a row of the rollout is a Gaussian belief flattened as [m, vec S] (:class:`MomentMatchedGP`),
the policy maps a belief to the action's moments (:class:`BeliefPolicy`), the propagator's step is the
moment-matched step above, and the reward is 1 − E[c] of the next belief (:class:`ExpectedSaturatingReward`).
So ``Rollout.returns()`` is H − J(θ), and M rows are M start distributions at once.

**Cost.** The saturating cost c(x) = 1 − exp(−½ (x − x*)ᵀ W (x − x*)) on the observation: for the cart-pole
W = Tᵀ T / σ_c² with T x = the pole tip (x + l sin θ, l cos θ), x* = (0, 0, 1, 0, 0) (the tip upright above the
origin), σ_c = 0.25 m, so 1 − c is the env's own reward exactly. :data:`TASKS` holds it per env.

**What the swing-up needs** (each measured in ``benchmarks/RESULTS.md``, where PILCO solves it at trials 4–7):
the RBF policy in PILCO's own parameterisation, the GP mean of pseudo data (c, y), started from c near p(x_1)
and y ~ N(0, 0.1²) (:class:`~mbrl_course.rl.controllers.RBFController`); its length-scales boxed, because
length-scales that run away to 1e50 make ∇J wrong; and a floor under the GP's noise
(``PILCOConfig.min_noise_var``), without which a noise-free simulator makes J rough at the 1e-4 level.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from scipy.optimize import minimize
from tqdm.auto import tqdm

from mbrl_course._checks import check_positive_float, check_positive_int, resolve_device
from mbrl_course.agents.dyna import DynaAgent
from mbrl_course.budget import Tier, by_budget
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import check_bounded_box_actions
from mbrl_course.models import PointMass, Propagator, Rollout, rollout
from mbrl_course.models.gp import GPDynamics, state_angle_indices
from mbrl_course.models.moment_matching import PredictionMoments, expected_saturating_cost, trig_features
from mbrl_course.rl.controllers import LinearController, RBFController

__all__ = ["TASKS", "BeliefFeatures", "BeliefPolicy", "ExpectedSaturatingReward", "MomentMatchedGP", "PILCOConfig", "PILCOLearner",
           "PILCOTask", "Prediction", "make_pilco", "pilco_loop_kwargs", "predict_trajectory"]


# ---------------------------------------------------------------------------------------------
# The task: which observation entries are angles, the start distribution, the saturating cost
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PILCOTask:
    """What PILCO must know of an env besides its transitions: angles, p(z_1) and the cost c(x).

    ``angles`` are the observation's indices of the cos entries of (cos θ, sin θ) pairs (see
    :func:`~mbrl_course.models.gp.state_from_obs`); ``start_mean``/``start_std`` describe p(z_1) =
    N(m_1, diag s²) in the state z; ``target`` x* and ``weight`` W the saturating cost on the observation.
    """

    angles: tuple[int, ...]
    start_mean: tuple[float, ...]
    start_std: tuple[float, ...]
    target: tuple[float, ...]
    weight: tuple[tuple[float, ...], ...]


def _tip_weight(rows: list[list[float]], width: float) -> tuple[tuple[float, ...], ...]:
    """W = Tᵀ T / σ_c² for the linear map T from the observation to the pole tip."""
    t = np.asarray(rows, dtype=float)
    return tuple(map(tuple, t.T @ t / width**2))


def cartpole_task(env: gym.Env) -> PILCOTask:
    """CartPoleSwingUp: z = (x, ẋ, θ, θ̇), p(z_1) = N((0, 0, π, 0), σ₀² I), tip (x + l sin θ, l cos θ) → (0, l)."""
    inner = env.unwrapped
    length, width, std = inner.params.pole_length, inner.params.cost_width, inner.init_std
    tip = [[1.0, 0.0, 0.0, length, 0.0], [0.0, 0.0, length, 0.0, 0.0]]  # obs (x, ẋ, cos θ, sin θ, θ̇) -> tip
    return PILCOTask(angles=(2,), start_mean=(0.0, 0.0, math.pi, 0.0), start_std=(std,) * 4,
                     target=(0.0, 0.0, 1.0, 0.0, 0.0), weight=_tip_weight(tip, width))


def pendulum_task(env: gym.Env) -> PILCOTask:
    """Pendulum-v1: z = (θ, θ̇), the uniform start θ ~ U(−π, π), θ̇ ~ U(−1, 1) matched by a Gaussian
    (mean (π, 0): hanging, as PILCO's pendulum starts), tip (sin θ, cos θ) → (0, 1) with σ_c = 0.5.

    Pendulum-v1's own reward is quadratic and its start anywhere on the circle: PILCO runs there (the GPU
    smoke checks use it) but is tuned for, and measured on, the cart-pole.
    """
    tip = [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]  # obs (cos θ, sin θ, θ̇) -> tip (sin θ, cos θ)
    return PILCOTask(angles=(0,), start_mean=(math.pi, 0.0), start_std=(math.pi / math.sqrt(3), 1 / math.sqrt(3)),
                     target=(1.0, 0.0, 0.0), weight=_tip_weight(tip, 0.5))


TASKS: dict[str, Callable[[gym.Env], PILCOTask]] = {
    "mbrl_course/CartPoleSwingUp-v0": cartpole_task,
    "Pendulum-v1": pendulum_task,
}
"""env id -> the PILCO task of that env (built from the env, whose constants it reads)."""


# ---------------------------------------------------------------------------------------------
# Beliefs flattened into rows, so that the one rollout primitive runs PILCO's moment matching
# ---------------------------------------------------------------------------------------------


def pack(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """[m, vec S]: (..., D) and (..., D, D) -> (..., D + D²)."""
    return torch.cat([mean, cov.flatten(-2)], dim=-1)


def unpack(row: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`pack`: (..., D + D²) -> m (..., D), S (..., D, D)."""
    return row[..., :dim], row[..., dim:].unflatten(-1, (dim, dim))


class BeliefFeatures:
    """p(x) = p(φ(z)) of a belief row [m, vec S], exact trig moments, computed once per belief.

    Within a rollout the policy, the step and the reward all need it: the policy and the step for p(z_t), the reward
    for p(z_{t+1}), which is the next policy's p(z_t). One instance shared by the three (as :func:`predict_trajectory`
    shares it) answers the repeats from the last two beliefs it saw, matched by identity (it keeps them alive, so a
    new tensor can never be taken for an old one).
    """

    def __init__(self, state_dim: int, angles: tuple[int, ...]):
        self.state_dim, self.angle_dims = state_dim, state_angle_indices(angles)
        self._recent: list[tuple[torch.Tensor, PredictionMoments]] = []

    def __call__(self, belief: torch.Tensor) -> PredictionMoments:
        for row, moments in self._recent:
            if row is belief:
                return moments
        mean, cov = unpack(belief, self.state_dim)
        moments = trig_features(mean, cov, self.angle_dims)  # p(x) = p(φ(z)), Cov[z, x] = S C_φ
        self._recent = [(belief, moments), *self._recent[:1]]
        return moments


class BeliefPolicy:
    """μ_θ on beliefs: p(z_t) = N(m, S) -> the moments of u_t = π(φ(z_t)), flattened as one action row.

    The row is [E[u], vec Cov[u], vec C_π] with C_π = Cov[x]⁻¹ Cov[x, u] the controller's input gain
    (O × A), which the propagator needs to build the joint p(x_t, u_t) and Cov[z_t, u_t].
    """

    def __init__(self, controller: torch.nn.Module, state_dim: int, angles: tuple[int, ...],
                 features: BeliefFeatures | None = None):
        self.controller = controller
        self.features = features or BeliefFeatures(state_dim, angles)

    def __call__(self, belief: torch.Tensor) -> torch.Tensor:
        x = self.features(belief)  # p(x_t) = p(φ(z_t))
        u = self.controller.moments(x.mean, x.cov)  # p(u_t)
        return torch.cat([u.mean, u.cov.flatten(-2), u.input_gain.flatten(-2)], dim=-1)


class _MomentStep(Propagator):
    """One moment-matched step of every belief row: p(z_t), p(u_t | ·) -> p(z_{t+1}) (the module docstring)."""

    deterministic = True

    def __init__(self, dynamics: GPDynamics, features: BeliefFeatures | None = None):
        self.dynamics = dynamics
        self.state_dim, self.obs_dim, self.act_dim = dynamics.state_dim, dynamics.obs_dim, dynamics.act_dim
        self.features = features or BeliefFeatures(dynamics.state_dim, dynamics.angles)

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, None]:
        d, o, a = self.state_dim, self.obs_dim, self.act_dim
        mean, cov = unpack(obs, d)  # p(z_t) = N(m, S)
        u_mean = action[..., :a]
        u_cov = action[..., a:a + a * a].unflatten(-1, (a, a))
        gain_u = action[..., a + a * a:].unflatten(-1, (o, a))  # C_π = Cov[x]⁻¹ Cov[x, u]
        x = self.features(obs)  # p(x_t), Cov[z, x] = S C_φ
        cov_zx = x.input_cov
        cov_xu = x.cov @ gain_u  # Cov[x_t, u_t]
        joint_mean = torch.cat([x.mean, u_mean], dim=-1)  # p(x_t, u_t)
        joint_cov = torch.cat([torch.cat([x.cov, cov_xu], dim=-1),
                               torch.cat([cov_xu.transpose(-1, -2), u_cov], dim=-1)], dim=-2)
        joint_cov = 0.5 * (joint_cov + joint_cov.transpose(-1, -2))
        delta = self.dynamics.gp.moments(joint_mean, joint_cov, include_noise=True, check=False)  # p(Δ_t), + σ²_ε
        cov_z_joint = torch.cat([cov_zx, cov_zx @ gain_u], dim=-1)  # Cov[z_t, (x_t, u_t)]
        cov_z_delta = cov_z_joint @ delta.input_gain  # Cov[z_t, Δ_t]
        next_mean = mean + delta.mean
        next_cov = cov + delta.cov + cov_z_delta + cov_z_delta.transpose(-1, -2)
        next_cov = 0.5 * (next_cov + next_cov.transpose(-1, -2))
        return pack(next_mean, next_cov), None


class MomentMatchedGP:
    """The GP dynamics seen on Gaussian beliefs: the model :func:`~mbrl_course.models.rollout` steps for PILCO.

    A row is a belief [m, vec S] (``obs_dim`` = D + D²), an action row the policy's moments (``act_dim`` =
    A + A² + O·A, see :class:`BeliefPolicy`); the step is deterministic. It views a fitted
    :class:`~mbrl_course.models.GPDynamics` and is not fitted itself.
    """

    predict_reward = False

    def __init__(self, dynamics: GPDynamics):
        self.dynamics = dynamics
        d, o, a = dynamics.state_dim, dynamics.obs_dim, dynamics.act_dim
        self.obs_dim, self.act_dim = d + d * d, a + a * a + o * a

    @property
    def device(self) -> torch.device:
        return self.dynamics.device

    @property
    def dtype(self) -> torch.dtype:
        return self.dynamics.dtype

    def fit(self, data, **options):
        raise TypeError("MomentMatchedGP views a GPDynamics and is not fitted itself: fit the GPDynamics")

    def next_state_distribution(self, obs: torch.Tensor, action: torch.Tensor) -> PointMass:
        """The next belief, a deterministic function of (belief, action moments)."""
        return PointMass(_MomentStep(self.dynamics).step(obs, action)[0])

    def propagator(self, **ignored: Any) -> Propagator:
        return _MomentStep(self.dynamics)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class ExpectedSaturatingReward:
    """g(belief, ·, belief') = 1 − E[c(x_{t+1})], x_{t+1} = φ(z_{t+1}), exactly (the reward of a belief rollout)."""

    def __init__(self, task: PILCOTask, *, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                 features: BeliefFeatures | None = None):
        self.features = features or BeliefFeatures(len(task.start_mean), task.angles)
        self.target = torch.tensor(task.target, dtype=dtype, device=device)
        self.weight = torch.tensor(task.weight, dtype=dtype, device=device)

    def __call__(self, belief: torch.Tensor, action: torch.Tensor, next_belief: torch.Tensor) -> torch.Tensor:
        x = self.features(next_belief)
        return 1.0 - expected_saturating_cost(x.mean, x.cov, self.target, self.weight)


@dataclass
class Prediction:
    """PILCO's predicted p(z_t), t = 1..H+1 (for the lecture's "prediction vs reality" figure)."""

    mean: torch.Tensor
    """m_t: (H+1, D)"""
    cov: torch.Tensor
    """S_t: (H+1, D, D)"""
    expected_cost: torch.Tensor
    """E[c(x_t)], t = 2..H+1: (H,)"""


def predict_trajectory(dynamics: GPDynamics, controller: torch.nn.Module, task: PILCOTask, horizon: int) -> Rollout:
    """One moment-matched rollout of H steps from p(z_1) (gradients follow the caller's grad mode).

    Returns the :class:`~mbrl_course.models.Rollout` of belief rows; ``rollout.returns()`` = H − J(θ).
    """
    model = MomentMatchedGP(dynamics)
    dtype, device = dynamics.dtype, dynamics.device
    mean = torch.tensor(task.start_mean, dtype=dtype, device=device)
    cov = torch.diag(torch.tensor(task.start_std, dtype=dtype, device=device) ** 2)
    features = BeliefFeatures(dynamics.state_dim, dynamics.angles)  # p(φ(z_t)) once per step, not three times
    policy = BeliefPolicy(controller, dynamics.state_dim, dynamics.angles, features)
    reward = ExpectedSaturatingReward(task, dtype=dtype, device=device, features=features)
    return rollout(model, pack(mean, cov)[None], policy=policy, horizon=horizon, reward_fn=reward,
                   propagator=_MomentStep(dynamics, features))


# ---------------------------------------------------------------------------------------------
# The learner of the Dyna loop
# ---------------------------------------------------------------------------------------------


@dataclass
class PILCOConfig:
    """Hyperparameters of PILCO. :meth:`for_budget` gives the tier's defaults (``full``: the paper's cart-pole)."""

    horizon: int = 40
    """H, the prediction horizon of J(θ) in env steps (the paper's cart-pole: 4 s = 40 steps of 0.1 s)."""
    controller: str = "rbf"
    """"rbf" (PILCO's RBF network) or "linear"."""
    num_basis: int = 50
    """Basis functions of the RBF controller (the paper's cart-pole: 50)."""
    policy_iterations: int = 100
    """L-BFGS-B iterations of the policy optimisation per trial (PILCO's cart-pole: up to 150 line searches)."""
    restarts: int = 1
    """Optimisations per trial; from the second on, θ starts from a perturbed copy and the best J wins."""
    gp_iterations: int = 100
    """L-BFGS iterations of the GP's marginal-likelihood fit per trial."""
    sparse_above: int = 400
    """Use the sparse (FITC) GP once D_real holds more transitions than this."""
    inducing: int = 300
    """Inducing inputs of the sparse GP."""
    min_noise_var: float = 2e-4
    """σ²_min, the floor under the GP's noise variances: PILCO's cart-pole measures every state with noise of std
    0.01, so its GPs see σ² ≈ 2 · 0.01² on state differences. Our simulator is exact, and without a floor the
    fit drove σ² to ~1e-6 α², where J(θ) was rough at the 1e-4 level (K⁻¹ ~ 1e8; 1e-6 with the floor)."""

    def __post_init__(self) -> None:
        for name in ("horizon", "num_basis", "policy_iterations", "restarts", "gp_iterations", "sparse_above",
                     "inducing"):
            check_positive_int(name, getattr(self, name))
        check_positive_float("min_noise_var", self.min_noise_var, allow_zero=True)
        if self.controller not in ("rbf", "linear"):
            raise ValueError(f"controller: expected 'rbf' or 'linear', got {self.controller!r}")

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> PILCOConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None)."""
        return by_budget(
            smoke=cls(horizon=10, num_basis=10, policy_iterations=3, gp_iterations=5),
            default=cls(policy_iterations=50, gp_iterations=75, sparse_above=200, inducing=100),
            full=cls(),
            tier=tier,
        )


class PILCOLearner:
    """PILCO's policy update: minimise J(θ) = Σ_t E[c(x_t)] through the moment-matched GP rollout.

    An episodic :class:`~mbrl_course.agents.dyna.Learner`: ``policy_update(f_ψ, D_real)`` runs once per trial,
    after the Dyna loop refitted the GP, and keeps the predicted trajectory of the policy it returns
    (:attr:`prediction`). In the real env the controller acts deterministically (PILCO explores through the
    model's uncertainty, not with action noise).
    """

    episodic = True

    def __init__(self, controller: torch.nn.Module, task: PILCOTask, config: PILCOConfig, *,
                 device: torch.device | str = "cpu", seed: int | None = 0, progress: bool = False):
        self.controller, self.task, self.config = controller, task, config
        self.device = resolve_device(device)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed((0 if seed is None else int(seed)) + 11)
        self.rng = np.random.default_rng(None if seed is None else int(seed) + 17)
        """draws the random first trial's actions"""
        self.progress = progress
        self.prediction: Prediction | None = None
        self.history: list[float] = []
        """J(θ) after each policy update."""

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """u = π_θ(x), deterministic in both modes; uniform random actions until the first policy update
        (PILCO's random first trial)."""
        if not self.history:
            bound = self.controller.action_bound.detach().cpu().numpy()
            return self.rng.uniform(-bound, bound).astype(np.float32)
        param = next(self.controller.parameters())
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs), dtype=param.dtype, device=param.device)
            return self.controller(x).cpu().numpy().astype(np.float32)

    def reset(self) -> None:
        return None

    def objective(self, model: GPDynamics) -> torch.Tensor:
        """J(θ) = Σ_{t=1}^{H} E[c(x_{t+1})] of the moment-matched rollout (differentiable in θ)."""
        out = predict_trajectory(model, self.controller, self.task, self.config.horizon)
        return self.config.horizon - out.returns()[0]

    def _optimise(self, model: GPDynamics) -> float:
        """L-BFGS-B (scipy's) on J(θ) with autograd's exact gradient; returns the best J seen, θ set to where it was.

        The controller's ``parameter_bounds`` (the RBF network's log length-scales) are L-BFGS-B's box.

        A J(θ) that is not finite (a step into a region where the moments break down) reads as a large cost with a
        zero gradient, so the line search backs off. scipy's line search rather than ``torch.optim.LBFGS``'s: on
        J's sharply curved valleys (descent for steps of 1e-3 along −∇J, ascent from 1e-2 on) torch's strong-Wolfe
        search returned to its start at every iteration, while scipy's kept descending.
        """
        named = [(name, p) for name, p in self.controller.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        sizes = [p.numel() for p in params]
        limits = self.controller.parameter_bounds() if hasattr(self.controller, "parameter_bounds") else {}
        bounds = [limits.get(name, (None, None)) for name, p in named for _ in range(p.numel())]
        bar = tqdm(total=self.config.policy_iterations, desc="PILCO policy", unit="it", leave=False,
                   disable=not self.progress)
        best = {"J": math.inf, "theta": None}
        worst = 10.0 * self.config.horizon  # above any J (a cost is at most 1 per step)

        def set_theta(theta: np.ndarray) -> None:
            with torch.no_grad():
                values = torch.as_tensor(theta, dtype=params[0].dtype).to(params[0].device)
                for p, chunk in zip(params, torch.split(values, sizes)):
                    p.copy_(chunk.view_as(p))

        def objective_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
            set_theta(theta)
            loss = self.objective(model)
            value = loss.item()
            if not math.isfinite(value):
                return worst, np.zeros_like(theta)
            grads = torch.autograd.grad(loss, params)
            gradient = torch.cat([g.reshape(-1) for g in grads]).detach().cpu().numpy()
            if not np.isfinite(gradient).all():
                return worst, np.zeros_like(theta)
            if value < best["J"]:
                best["J"], best["theta"] = value, theta.copy()
            return value, gradient

        def iteration(_theta) -> None:
            bar.update(1)
            bar.set_postfix(J=f"{best['J']:.3f}")

        if hasattr(self.controller, "project_"):
            self.controller.project_()  # a θ from an older checkpoint may lie outside the bounds
        theta0 = torch.cat([p.detach().reshape(-1) for p in params]).cpu().double().numpy()
        minimize(objective_and_gradient, theta0, jac=True, method="L-BFGS-B", callback=iteration, bounds=bounds,
                 options={"maxiter": self.config.policy_iterations})
        bar.close()
        set_theta(best["theta"] if best["theta"] is not None else theta0)
        return best["J"]

    def policy_update(self, model: GPDynamics, real_buffer: ReplayBuffer) -> dict[str, float]:
        """θ := argmin_θ J(θ) by L-BFGS-B in the GP f_ψ (the best of ``restarts`` optimisations)."""
        if not isinstance(model, GPDynamics):
            raise TypeError(f"model: PILCO needs a GPDynamics (moment matching), got {type(model).__name__}")
        sizes = (self.controller.obs_dim, self.controller.act_dim)
        if sizes != (model.obs_dim, model.act_dim):
            raise ValueError(f"controller: expected a policy from observations of size {model.obs_dim} to actions of "
                             f"size {model.act_dim} (the model's), got {sizes[0]} -> {sizes[1]}")
        best_value, best_state = math.inf, None
        start = {k: v.clone() for k, v in self.controller.state_dict().items()}
        for restart in range(self.config.restarts):
            if restart > 0:  # a perturbed copy of the starting θ
                self.controller.load_state_dict(start)
                with torch.no_grad():
                    for p in self.controller.parameters():
                        noise = torch.randn(p.shape, generator=self.generator, dtype=p.dtype)
                        p.add_(0.1 * noise.to(p.device) * (p.abs().mean() + 1e-3))
            value = self._optimise(model)
            if math.isfinite(value) and value < best_value:
                best_value, best_state = value, {k: v.clone() for k, v in self.controller.state_dict().items()}
        if best_state is None:
            warnings.warn("PILCO: every policy optimisation ended with a non-finite J(θ); the policy is unchanged",
                          stacklevel=2)
            self.controller.load_state_dict(start)
        else:
            self.controller.load_state_dict(best_state)
        with torch.no_grad():
            out = predict_trajectory(model, self.controller, self.task, self.config.horizon)
        mean, cov = unpack(out.obs[:, 0], model.state_dim)
        self.prediction = Prediction(mean=mean, cov=cov, expected_cost=1.0 - out.reward[:, 0])
        self.history.append(best_value)
        return {"J": best_value}

    def check_finite(self) -> None:
        for p in self.controller.parameters():
            if not torch.isfinite(p).all():
                raise FloatingPointError("PILCO: the controller's parameters became NaN/inf")

    def state_dict(self) -> dict[str, Any]:
        return {"controller": self.controller.state_dict(), "generator": self.generator.get_state(),
                "history": list(self.history),
                "rng": self.rng.bit_generator.state,
                "prediction": None if self.prediction is None else vars(self.prediction)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.generator.set_state(state["generator"])
        self.history = list(state["history"])
        self.rng.bit_generator.state = state["rng"]
        self.prediction = None if state["prediction"] is None else Prediction(**state["prediction"])


def _task_for(env: gym.Env, env_id: str) -> PILCOTask:
    if env_id not in TASKS:
        raise ValueError(f"env_id: PILCO knows the angles, start distribution and cost of {sorted(TASKS)}, "
                         f"got {env_id!r} (add a PILCOTask to mbrl_course.agents.pilco.TASKS)")
    task = TASKS[env_id](env)
    obs_dim = env.observation_space.shape[0]
    if len(task.target) != obs_dim:
        raise ValueError(f"env: the PILCO task of {env_id} expects observations of size {len(task.target)}, "
                         f"got {obs_dim}")
    return task


def make_pilco(env: gym.Env, env_id: str, config: PILCOConfig, *, device="cpu", seed: int | None = 0) -> DynaAgent:
    """Build PILCO for ``env``: a :class:`~mbrl_course.models.GPDynamics` and a :class:`PILCOLearner`."""
    check_bounded_box_actions(env)
    task = _task_for(env, env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    bound = torch.as_tensor(env.action_space.high, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    if config.controller == "rbf":
        controller = RBFController(obs_dim, act_dim, bound, num_basis=config.num_basis)
    else:
        controller = LinearController(obs_dim, act_dim, bound)
    # θ's starting point (PILCO's): centres spread over the start distribution's observations, pseudo-targets
    # ~ N(0, 0.1²), length-scales 1, and 0.7 on the (cos θ, sin θ) entries
    start_obs = _start_obs_moments(task)
    if config.controller == "rbf":
        lengthscale = torch.ones(obs_dim, dtype=torch.float64)
        for cos_index in task.angles:
            lengthscale[cos_index:cos_index + 2] = 0.7
        controller.initialise(start_obs[0], start_obs[1], generator, lengthscale=lengthscale)
    else:
        controller.initialise(start_obs[0], start_obs[1], generator)
    controller.to(resolve_device(device))
    model = GPDynamics(obs_dim, act_dim, angles=task.angles, sparse_above=config.sparse_above,
                       inducing=config.inducing, min_noise_var=config.min_noise_var, device=device)
    learner = PILCOLearner(controller, task, config, device=device, seed=seed)
    return DynaAgent(learner, model, fit_kwargs={"iterations": config.gp_iterations}, device=device, seed=seed)


def _start_obs_moments(task: PILCOTask) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of x_1 = φ(z_1) under p(z_1)."""
    mean = torch.tensor(task.start_mean, dtype=torch.float64)
    cov = torch.diag(torch.tensor(task.start_std, dtype=torch.float64) ** 2)
    x = trig_features(mean, cov, state_angle_indices(task.angles))
    return x.mean, x.cov.diagonal().clamp_min(1e-6).sqrt()


def pilco_loop_kwargs(config: PILCOConfig) -> dict:
    """The Dyna loop's arguments for PILCO: no random steps of the loop's own (the learner's first trial is
    random: it has no policy yet)."""
    return {"seed_steps": 0}

