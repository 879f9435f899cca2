"""Deep PILCO (Gal, McAllister & Rasmussen, 2016): PILCO with a dropout network and particles.

The lecture's [Dyna] recipe:

    i' = f_ψ(i, u) := p(i' | i, u) = 1/K Σ_k N(i' | μ^k_ψ(i, u), Σ^k_ψ(i, u)),   ψ ~ Dropout(ψ)
    policy-iteration-algo := REINFORCE

The trial-by-trial loop is :func:`~mbrl_course.agents.dyna.dyna_loop` with an *episodic* learner: the first
trial acts at random (the learner has no policy yet), then after every trial f_ψ, a
:class:`~mbrl_course.models.DropoutDynamics`, is refit on D_real and :meth:`DeepPILCOLearner.policy_update`
optimises PILCO's RBF controller u = π_θ(i) (:class:`~mbrl_course.rl.controllers.RBFController`) in it;
the next trial runs the new policy. A trial is an episode of the env: 10 s (100 steps) on the cart-pole, where
``train pilco`` runs PILCO's 4 s trials (``--max-episode-steps 40`` gives Deep PILCO those too). With 4 s trials
the random first trial hardly moves the pole, no particle reaches the reward's slope and the gradient stays ~0
(a default-tier run returned ~0 for 10 trials), while a 10 s random trial can swing the pole high.

**The policy update.** The start-state distribution p(i_1) = N(μ_0, Σ_0) is fit to the first observations
of the episodes in D_real. Then ``policy_steps`` Adam steps on θ, each on a fresh rollout of K particles:

    i^r_1 = μ_0 + L_0 ε_r  (L_0 L_0ᵀ = Σ_0),   r = 1..K
    u^r_t = π_θ(i^r_t) + σ ξ^r_t,   i^r_{t+1} from f_ψ's propagator (a dropout mask per particle, held
                                     fixed over the horizon; output noise; moment matching)
    Ĵ(θ) = Σ_{t=1}^{H} 1/K Σ_r g(i^r_t, u^r_t, i^r_{t+1})      (g: the env's reward function)

one :func:`~mbrl_course.models.rollout` per step. The gradient of J(θ) = E[Ĵ(θ)] has two estimators here,
both computed on the same particle rollouts (:func:`particle_objective`):

``gradient="reparam"`` (the default, the paper's)
    Every random number (ε, the masks z, the output noise, the moment-matching draws, ξ) is drawn
    independently of θ, so Ĵ is a differentiable function of θ given them and ∇_θ Ĵ is an unbiased
    estimate of ∇_θ J: backpropagation through the policy, the model, the moment matching and the reward.
    σ = 0 by default: PILCO's deterministic controller.

``gradient="reinforce"`` (the slide's framing)
    The policy explores, u ~ N(π_θ(i), σ² I) with σ > 0, and the gradient is the score-function estimator,
    with no backpropagation through the model:

        ∇_θ Ĵ = 1/K Σ_r Σ_t ∇_θ log N(u^r_t | π_θ(i^r_t), σ² I) (G^r_t − b^r_t),
        G^r_t = Σ_{t' ≥ t} g^r_{t'}  (reward to go),   b^r_t = 1/(K − 1) Σ_{r' ≠ r} G^{r'}_t

    The leave-one-out baseline b^r_t depends on the other particles only, which are independent of
    particle r's actions, so it lowers the variance without biasing the estimate. That independence
    needs independent trajectories: each particle keeps its mask and its noise, and is *not*
    moment-matched (the Gaussian refit couples the particles: one particle's action would move the
    others' futures, and its own reward to go would no longer be its return). With that propagation both
    estimators estimate the gradient of the same J; ``benchmarks/deep_pilco_gradients.py`` compares
    their variances.

Actions are clipped to the env's box ±u_max before the model sees them (the policy itself squashes
into it; only the exploration noise can leave it); REINFORCE's log-density is of the unclipped u.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from mbrl_course._checks import (
    as_tensor,
    check_choice,
    check_positive_float,
    check_positive_int,
    resolve_device,
)
from mbrl_course.agents.configs import FitConfig
from mbrl_course.agents.dyna import DynaAgent
from mbrl_course.budget import Tier, by_budget
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import check_bounded_box_actions, reward_fn, termination_fn
from mbrl_course.models import ACTIVATIONS, DropoutDynamics, Rollout, rollout
from mbrl_course.models.imagination import _standard_normal
from mbrl_course.rl.controllers import RBFController

__all__ = [
    "GRADIENTS",
    "DeepPILCOConfig",
    "DeepPILCOLearner",
    "DropoutConfig",
    "ParticleObjective",
    "deep_pilco_loop_kwargs",
    "episode_starts",
    "make_deep_pilco",
    "particle_objective",
    "start_distribution",
]

GRADIENTS: tuple[str, ...] = ("reparam", "reinforce")

StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# The objective and its two gradient estimators
# ---------------------------------------------------------------------------------------------


class ParticleObjective(NamedTuple):
    """What :func:`particle_objective` returns."""

    loss: torch.Tensor
    """the scalar whose gradient w.r.t. θ is −(the estimate of ∇_θ J)"""
    value: torch.Tensor
    """Ĵ = Σ_t 1/K Σ_r g^r_t, the particles' mean return (a detached scalar)"""
    rollout: Rollout
    """the particle rollout, ``(H[+1], K, ·)``"""


def particle_objective(
    model,
    policy: Callable[[torch.Tensor], torch.Tensor],
    start_obs: torch.Tensor,
    *,
    horizon: int,
    reward_fn: StepFn,
    termination_fn: StepFn | None = None,
    gradient: str = "reparam",
    exploration_std: float | torch.Tensor = 0.0,
    action_bound: torch.Tensor | None = None,
    moment_matching: bool = True,
    generator: torch.Generator | None = None,
) -> ParticleObjective:
    """Ĵ(θ) = Σ_t 1/K Σ_r g^r_t on one particle rollout, and a loss whose gradient estimates −∇_θ J.

    ``gradient="reparam"``: loss = −Ĵ, differentiated through the rollout.
    ``gradient="reinforce"``: the rollout runs without gradients and
    loss = −1/K Σ_r Σ_t log N(u^r_t | π_θ(i^r_t), σ² I) (G^r_t − b^r_t) (leave-one-out baseline b; see the
    module docstring), which needs σ > 0, K ≥ 2 and ``moment_matching=False``.

    Args:
        model: f_ψ (any :class:`~mbrl_course.models.DynamicsModel`; Deep PILCO's
            :class:`~mbrl_course.models.DropoutDynamics`).
        policy: π_θ, ``obs (K, O) -> action (K, A)`` (deterministic; the noise σ ξ is added here).
        start_obs: i^r_1, ``(K, O)``.
        horizon: H ≥ 1.
        reward_fn, termination_fn: the env's batched g(i, u, i') and done(i, u, i') (or None).
        gradient: one of :data:`GRADIENTS`.
        exploration_std: σ, a number or ``(A,)``, in action units (0: the deterministic policy).
        action_bound: u_max ``(A,)``: actions are clipped to ±u_max before the model sees them (None: no clip).
        moment_matching: the propagator's Gaussian refit of the particles after every step.
        generator: for the masks, all noises and the exploration.
    Returns:
        a :class:`ParticleObjective`.
    """
    check_choice("gradient", gradient, GRADIENTS)
    horizon = check_positive_int("horizon", horizon)
    sigma = as_tensor("exploration_std", exploration_std, dtype=model.dtype, device=model.device)
    if not bool((sigma >= 0).all()) or not bool(torch.isfinite(sigma).all()):
        raise ValueError(f"exploration_std: expected finite σ >= 0, got {sigma.tolist()}")
    explore = bool((sigma > 0).any())
    if gradient == "reinforce":
        if not bool((sigma > 0).all()):
            raise ValueError(f"exploration_std: REINFORCE needs a stochastic policy, σ > 0, got {sigma.tolist()}")
        if moment_matching:
            raise ValueError("moment_matching: REINFORCE needs independent particles (the Gaussian refit couples "
                             "them), pass moment_matching=False")
        if start_obs.shape[0] < 2:
            raise ValueError(f"start_obs: REINFORCE's leave-one-out baseline needs K >= 2 particles, got "
                             f"{start_obs.shape[0]}")
    raw_actions: list[torch.Tensor] = []

    def act(obs: torch.Tensor) -> torch.Tensor:  # u = π_θ(i) + σ ξ, clipped to the box
        action = policy(obs)
        if explore:
            action = action + sigma * _standard_normal(tuple(action.shape), generator, action)
        raw_actions.append(action)
        return action if action_bound is None else torch.maximum(torch.minimum(action, action_bound), -action_bound)

    propagator = model.propagator(generator=generator, moment_matching=moment_matching)
    with torch.set_grad_enabled(torch.is_grad_enabled() and gradient == "reparam"):
        out = rollout(model, start_obs, policy=act, horizon=horizon, reward_fn=reward_fn,
                      termination_fn=termination_fn, propagator=propagator)
    value = out.reward.sum(0).mean()  # Ĵ = Σ_t 1/K Σ_r g^r_t
    if gradient == "reparam":
        return ParticleObjective(-value, value.detach(), out)
    # REINFORCE: score function × (reward to go − leave-one-out baseline), no gradient through f_ψ
    to_go = out.reward.flip(0).cumsum(0).flip(0)  # G^r_t: (H, K)
    baseline = (to_go.sum(1, keepdim=True) - to_go) / (to_go.shape[1] - 1)  # b^r_t = mean_{r' ≠ r} G^{r'}_t
    mean = policy(out.obs[:-1])  # π_θ(i^r_t) again, now with gradients: (H, K, A)
    log_prob = torch.distributions.Normal(mean, sigma.expand_as(mean)).log_prob(torch.stack(raw_actions)).sum(-1)
    weight = torch.where(out.alive, to_go - baseline, 0.0)
    loss = -(log_prob * weight).sum(0).mean()
    return ParticleObjective(loss, value.detach(), out)


# ---------------------------------------------------------------------------------------------
# The start-state distribution
# ---------------------------------------------------------------------------------------------


def episode_starts(buffer: ReplayBuffer) -> torch.Tensor:
    """The first observation of every episode in D_real (the episode still running included): ``(E, O)``."""
    if len(buffer) == 0:
        raise ValueError("real_buffer: expected at least one transition, got an empty buffer")
    ends = buffer.episode_ends()
    first = torch.cat([torch.ones(1, dtype=torch.bool, device=ends.device), ends[:-1]])
    return buffer.all().obs[first]


def start_distribution(starts: torch.Tensor, min_std: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """p(i_1) = N(μ_0, Σ_0) fit to start observations: μ_0 = mean, Σ_0 = sample covariance + min_std² I.

    The ridge keeps Σ_0 positive definite when there are fewer starts than dimensions (one random
    episode gives one start).

    Args:
        starts: ``(E, O)``, E ≥ 1.
    Returns:
        μ_0 ``(O,)`` and the Cholesky factor L_0 ``(O, O)`` of Σ_0.
    """
    min_std = check_positive_float("min_std", min_std)
    mean = starts.mean(0)
    centred = starts - mean
    cov = centred.T @ centred / max(starts.shape[0] - 1, 1)
    eye = torch.eye(starts.shape[1], dtype=starts.dtype, device=starts.device)
    return mean, torch.linalg.cholesky(cov + min_std**2 * eye)


# ---------------------------------------------------------------------------------------------
# The learner
# ---------------------------------------------------------------------------------------------


class DeepPILCOLearner:
    """Deep PILCO's policy update (an episodic :class:`~mbrl_course.agents.dyna.Learner`) and its policy.

    ``policy_update(model, D_real)``: fit p(i_1) to the episodes' starts, then ``policy_steps`` Adam steps on
    the policy's parameters, each on a fresh rollout of K = ``particles`` particles over ``horizon`` steps
    (:func:`particle_objective`). Until the first update the learner acts uniformly at random (Deep PILCO's
    random first trial); at the first update the controller is initialised around the start, spread like the
    states seen: ``policy.initialise(μ_0, s, generator)`` with s the standard deviations of D_real's observations
    (RBF centres c_i ~ N(μ_0, diag s²)). Centres drawn from the start distribution alone (PILCO's way) left the
    policy nearly constant over the swing and its particles never reached the reward; centred on D_real's mean,
    which a random trial can carry tens of metres away, they left it ~0 at the start (both seen in runs).

    Args:
        policy: π_θ, an ``nn.Module``: ``obs (..., O) -> action (..., A)`` inside ±u_max, with
            ``initialise(mean (O,), std (O,), generator)`` (e.g. :class:`~mbrl_course.rl.controllers.RBFController`).
        obs_dim: O. action_bound: u_max, a number or ``(A,)``: the env's symmetric action box.
        reward_fn: the env's batched reward g(i, u, i'). termination_fn: the env's termination (or None).
        particles: K. horizon: H. policy_steps: Adam steps per update. lr: Adam's learning rate.
        gradient: one of :data:`GRADIENTS`.
        exploration_std: σ as a fraction of u_max; None: 0 for ``"reparam"``, 0.1 for ``"reinforce"``.
        moment_matching: refit the particles after every step; None: True for ``"reparam"``, False for
            ``"reinforce"`` (which refuses True).
        max_grad_norm: clip the gradient's norm to this before each Adam step (None: no clipping).
        start_std: the ridge of the fitted start distribution, Σ_0 = sample covariance + start_std² I
            (:func:`start_distribution`).
        device: where the policy and the generators live. seed: seeds them.
    """

    episodic = True

    def __init__(
        self,
        policy: nn.Module,
        *,
        obs_dim: int,
        action_bound,
        reward_fn: StepFn,
        termination_fn: StepFn | None = None,
        particles: int = 10,
        horizon: int = 25,
        policy_steps: int = 100,
        lr: float = 1e-2,
        gradient: str = "reparam",
        exploration_std: float | None = None,
        moment_matching: bool | None = None,
        max_grad_norm: float | None = None,
        start_std: float = 0.1,
        device: torch.device | str = "cpu",
        seed: int | None = 0,
    ):
        self.device = resolve_device(device)
        self.policy = policy.to(self.device)
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.dtype = next(policy.parameters()).dtype
        bound = as_tensor("action_bound", action_bound, dtype=self.dtype, device=self.device).reshape(-1)
        if not bool(torch.isfinite(bound).all()) or not bool((bound > 0).all()):
            raise ValueError(f"action_bound: expected finite u_max > 0, got {bound.tolist()}")
        self.action_bound = bound
        with torch.no_grad():
            probe = policy(torch.zeros(1, self.obs_dim, dtype=self.dtype, device=self.device))
        if tuple(probe.shape) != (1, bound.shape[0]):
            raise ValueError(f"policy: expected actions of shape (..., {bound.shape[0]}) (the env's action size), "
                             f"got {tuple(probe.shape)} for observations of shape (1, {self.obs_dim})")
        self.reward_fn, self.termination_fn = reward_fn, termination_fn
        self.particles = check_positive_int("particles", particles)
        self.horizon = check_positive_int("horizon", horizon)
        self.policy_steps = check_positive_int("policy_steps", policy_steps)
        self.lr = check_positive_float("lr", lr)
        self.gradient = check_choice("gradient", gradient, GRADIENTS)
        reinforce = gradient == "reinforce"
        if exploration_std is None:
            exploration_std = 0.1 if reinforce else 0.0
        self.exploration_std = check_positive_float("exploration_std", exploration_std, allow_zero=True)
        self.moment_matching = (not reinforce) if moment_matching is None else bool(moment_matching)
        if reinforce and self.exploration_std == 0:
            raise ValueError("exploration_std: REINFORCE needs a stochastic policy, expected a number > 0, got 0")
        if reinforce and self.moment_matching:
            raise ValueError("moment_matching: REINFORCE needs independent particles (the Gaussian refit couples "
                             "them); expected False or None, got True")
        if reinforce and self.particles < 2:
            raise ValueError(f"particles: REINFORCE's leave-one-out baseline needs K >= 2, got {particles}")
        if self.moment_matching and self.particles < 2:
            raise ValueError(f"particles: moment matching refits a Gaussian to the particles, expected K >= 2, "
                             f"got {particles}")
        self.max_grad_norm = None if max_grad_norm is None else check_positive_float("max_grad_norm", max_grad_norm)
        self.start_std = check_positive_float("start_std", start_std)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.lr)
        base = 0 if seed is None else int(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(base + 5)
        """the particles' starts, masks and noises"""
        self.act_generator = torch.Generator()
        self.act_generator.manual_seed(base + 6)
        """the random first trial's actions and the exploration noise in the real env (CPU)"""
        self.initialised = False
        """True once the first policy update ran (until then the learner acts at random)"""
        self.updates = 0
        self.last_loss = torch.zeros((), dtype=self.dtype, device=self.device)
        self.last_value = torch.zeros((), dtype=self.dtype, device=self.device)

    @property
    def sigma(self) -> torch.Tensor:
        """σ in action units: exploration_std · u_max, ``(A,)``."""
        return self.exploration_std * self.action_bound

    # ------------------------------------------------------------------ the policy π_θ
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """u = π_θ(i) (+ σ ξ when exploring and not ``deterministic``), clipped to ±u_max: ``(A,)``; uniform
        random actions in ±u_max until the first policy update (the random first trial)."""
        if not self.initialised:
            uniform = torch.rand(self.action_bound.shape, generator=self.act_generator, dtype=self.dtype)
            return ((2 * uniform - 1) * self.action_bound.cpu()).numpy()
        obs_t = torch.as_tensor(np.asarray(obs), dtype=self.dtype, device=self.device)
        action = self.policy(obs_t[None])[0]
        if not deterministic and self.exploration_std > 0:
            noise = torch.randn(action.shape, generator=self.act_generator, dtype=self.dtype).to(self.device)
            action = torch.maximum(torch.minimum(action + self.sigma * noise, self.action_bound), -self.action_bound)
        return action.cpu().numpy()

    def reset(self) -> None:
        """Start of an episode (the policy keeps no state)."""

    # ------------------------------------------------------------------ the policy update
    def _initialise(self, start_mean: torch.Tensor, real_buffer: ReplayBuffer) -> None:
        spread = real_buffer.all().obs.to(torch.float64).std(0, correction=0).cpu()  # s: how far the states went
        seed = int(torch.randint(0, 2**62, (), generator=self.generator, device=self.generator.device))
        self.policy.initialise(start_mean.cpu(), spread, torch.Generator().manual_seed(seed))
        self.initialised = True

    def objective(self, model, start_mean: torch.Tensor, start_chol: torch.Tensor) -> ParticleObjective:
        """One particle rollout from K starts i^r_1 = μ_0 + L_0 ε_r and its :func:`particle_objective`."""
        eps = _standard_normal((self.particles, self.obs_dim), self.generator, start_mean)
        start = start_mean + eps @ start_chol.T
        return particle_objective(
            model, self.policy, start, horizon=self.horizon, reward_fn=self.reward_fn,
            termination_fn=self.termination_fn, gradient=self.gradient, exploration_std=self.sigma,
            action_bound=self.action_bound, moment_matching=self.moment_matching, generator=self.generator)

    def policy_update(self, model, real_buffer: ReplayBuffer) -> dict[str, float]:
        """θ := Adam steps on −Ĵ(θ) (or REINFORCE's surrogate) in f_ψ, from p(i_1) fit to D_real's starts.

        Returns the last step's loss and the particles' mean return Ĵ.
        """
        if model is None:
            raise ValueError("model: Deep PILCO optimises its policy in a dynamics model f_ψ, got None")
        if model.obs_dim != self.obs_dim:
            raise ValueError(f"model: expected obs_dim = {self.obs_dim}, got {model.obs_dim}")
        start_mean, start_chol = start_distribution(episode_starts(real_buffer).to(self.device, model.dtype),
                                                    self.start_std)
        if not self.initialised:
            self._initialise(start_mean, real_buffer)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        for _ in range(self.policy_steps):
            result = self.objective(model, start_mean, start_chol)
            grads = torch.autograd.grad(result.loss, params, allow_unused=True)
            for p, g in zip(params, grads):
                p.grad = torch.zeros_like(p) if g is None else g
            if self.max_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, self.max_grad_norm)
            self.optimizer.step()
            if hasattr(self.policy, "project_"):
                self.policy.project_()  # keep the RBF length-scales in their box (see LOG_LENGTHSCALE_BOUNDS)
            self.updates += 1
        self.last_loss, self.last_value = result.loss.detach(), result.value
        return {"loss": float(self.last_loss), "value": float(self.last_value)}

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` if the last loss or a policy parameter became NaN/inf."""
        finite = bool(torch.isfinite(self.last_loss)) and all(
            bool(torch.isfinite(p).all()) for p in self.policy.parameters())
        if not finite:
            raise FloatingPointError("Deep PILCO: the policy's loss or parameters became NaN/inf; the run stopped "
                                     "(try a smaller lr or max_grad_norm, or a shorter horizon)")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The policy, Adam's state, both generators and the update count."""
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "act_generator": self.act_generator.get_state(),
                "initialised": self.initialised, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.act_generator.set_state(state["act_generator"])
        self.initialised, self.updates = bool(state["initialised"]), int(state["updates"])


# ---------------------------------------------------------------------------------------------
# Configs, the builder and the loop's arguments
# ---------------------------------------------------------------------------------------------


@dataclass
class DropoutConfig:
    """f_ψ of Deep PILCO: a :class:`~mbrl_course.models.DropoutDynamics` (defaults: the paper's 2 × 200, p = 0.05)."""

    hidden_sizes: tuple[int, ...] = (200, 200)
    """Hidden layer widths; dropout acts on every one."""
    dropout: float = 0.05
    """p, the probability that a hidden unit is dropped."""
    activation: str = "relu"
    """Activation of the hidden layers (one of ACTIVATIONS)."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(check_positive_int("hidden_sizes", h) for h in self.hidden_sizes)
        self.dropout = check_positive_float("dropout", self.dropout, allow_zero=True)
        if self.dropout >= 1:
            raise ValueError(f"dropout: expected a probability in [0, 1), got {self.dropout}")
        check_choice("activation", self.activation, ACTIVATIONS)

    def build(self, obs_dim: int, act_dim: int, *, device: torch.device | str = "cpu") -> DropoutDynamics:
        """The dropout network over the state change (float64)."""
        return DropoutDynamics(obs_dim, act_dim, hidden_sizes=self.hidden_sizes, dropout=self.dropout,
                               activation=self.activation, device=device)


@dataclass
class DeepPILCOConfig:
    """Hyperparameters of Deep PILCO. :meth:`for_budget` gives the tier's defaults."""

    model: DropoutConfig = field(default_factory=DropoutConfig)
    """f_ψ, the dropout network."""
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=100, weight_decay=1e-4, batch_size=128))
    """Each refit of f_ψ after a trial (weight decay is the dropout objective's prior term)."""
    num_basis: int = 50
    """N, basis functions of the RBF controller."""
    particles: int = 10
    """K, particles per rollout of the policy update."""
    horizon: int = 40
    """H, imagined steps per rollout (40: PILCO's 4 s of the cart-pole)."""
    policy_steps: int = 1000
    """Adam steps on the policy per policy update (each on a fresh rollout)."""
    policy_lr: float = 1e-2
    """Adam's learning rate on the policy."""
    gradient: str = "reparam"
    """"reparam" (backpropagation through the particles, the paper's) or "reinforce" (score function)."""
    exploration_std: float | None = None
    """σ of the policy's Gaussian exploration, as a fraction of u_max; None: 0 (reparam) or 0.1 (reinforce)."""
    moment_matching: bool | None = None
    """Refit the particles by a Gaussian after every step; None: True (reparam) or False (reinforce, which needs False)."""
    max_grad_norm: float | None = 10.0
    """Clip the policy gradient's norm to this before each Adam step (None: no clipping)."""
    start_std: float = 0.1
    """Ridge of the start distribution fit to D_real's episode starts: Σ_0 = sample covariance + start_std² I."""

    def __post_init__(self) -> None:  # the learner's checks, before anything runs
        for name in ("num_basis", "particles", "horizon", "policy_steps"):
            setattr(self, name, check_positive_int(name, getattr(self, name)))
        self.policy_lr = check_positive_float("policy_lr", self.policy_lr)
        check_choice("gradient", self.gradient, GRADIENTS)
        reinforce = self.gradient == "reinforce"
        if self.exploration_std is not None:
            self.exploration_std = check_positive_float("exploration_std", self.exploration_std, allow_zero=True)
            if reinforce and self.exploration_std == 0:
                raise ValueError("exploration_std: REINFORCE needs a stochastic policy, expected a number > 0 "
                                 "(or None for 0.1), got 0")
        if reinforce and self.moment_matching:
            raise ValueError("moment_matching: REINFORCE needs independent particles (the Gaussian refit couples "
                             "them); expected false or none, got true")
        if self.max_grad_norm is not None:
            self.max_grad_norm = check_positive_float("max_grad_norm", self.max_grad_norm)
        self.start_std = check_positive_float("start_std", self.start_std)
        if self.particles < 2 and (reinforce or self.moment_matching is not False):
            raise ValueError(f"particles: moment matching and REINFORCE's baseline need K >= 2, got {self.particles}")

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> DeepPILCOConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None): the paper's sizes, smaller."""
        return by_budget(
            smoke=cls(model=DropoutConfig(hidden_sizes=(32, 32)),
                      fit=FitConfig(epochs=20, max_updates=200, batch_size=64, weight_decay=1e-4),
                      num_basis=10, particles=8, horizon=10, policy_steps=10),
            default=cls(model=DropoutConfig(hidden_sizes=(100, 100)),
                        fit=FitConfig(epochs=50, max_updates=1500, batch_size=128, weight_decay=1e-4),
                        num_basis=30, particles=10, horizon=30, policy_steps=300),
            full=cls(),
            tier=tier,
        )


def make_deep_pilco(env: gym.Env, env_id: str, config: DeepPILCOConfig, *, device="cpu",
                    seed: int | None = 0) -> DynaAgent:
    """Build Deep PILCO for ``env``: the dropout network f_ψ + the RBF controller and its learner, as a
    :class:`DynaAgent` that refits f_ψ and optimises the policy after every episode."""
    check_bounded_box_actions(env)
    low, high = env.action_space.low, env.action_space.high
    if not np.allclose(low, -high):
        raise ValueError(f"env: the RBF controller squashes into a symmetric box ±u_max, got low={low}, high={high}")
    if seed is not None:
        torch.manual_seed(seed)  # the model's initial weights and its training's dropout masks
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    model = config.model.build(obs_dim, act_dim, device=device)
    policy = RBFController(obs_dim, act_dim, torch.as_tensor(high, dtype=torch.float64), num_basis=config.num_basis)
    learner = DeepPILCOLearner(
        policy, obs_dim=obs_dim, action_bound=high, reward_fn=reward_fn(env_id), termination_fn=termination_fn(env_id),
        particles=config.particles, horizon=config.horizon, policy_steps=config.policy_steps, lr=config.policy_lr,
        gradient=config.gradient, exploration_std=config.exploration_std, moment_matching=config.moment_matching,
        max_grad_norm=config.max_grad_norm, start_std=config.start_std, device=device, seed=seed)
    return DynaAgent(learner, model, fit_kwargs=config.fit.kwargs(), model_every=1, updates_per_step=1,
                     device=device, seed=seed)


def deep_pilco_loop_kwargs(config: DeepPILCOConfig) -> dict:
    """The Dyna loop's arguments for Deep PILCO: no random steps of the loop's own (the learner's first trial is
    random: it has no policy yet)."""
    return {"seed_steps": 0}
