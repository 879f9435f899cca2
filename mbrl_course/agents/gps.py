"""Guided policy search (Levine & Koltun, 2013): iLQR's guiding samples train a neural policy by importance sampling.

The slide's GPS row reads ``f_ψ := iLQR, policy-iteration-algo := REINFORCE + importance sampling``. Taken
apart, that is three things:

- **f_ψ**, the dynamics iLQR differentiates. Default (``model="true"``): the env's own equations
  (:class:`~mbrl_course.models.TrueDynamics`), the setting of Levine & Koltun (2013), whose guiding samples
  come from differential dynamic programming on a known model. Option ``model="mlp"``: a
  :class:`~mbrl_course.models.DeltaMLP` refit on D_real after every episode (iLQR then plans on the
  learned mean). Levine & Abbeel's (2014) local time-varying linear-Gaussian models with the KL trust region
  (:mod:`mbrl_course.planning.local_models`) need N trajectories of one controller from one start state per
  iteration; the Dyna loop's real episodes start anywhere in p(x_0), one per episode, so they are not the
  learner's default (see ``tests/test_ilqr.py`` and the lecture for them on their own).
- **iLQR is not a model but the trajectory optimiser** that turns f into *guiding distributions*. From C start
  states x_0^j ~ p(x_0) it finds locally optimal trajectories and the linear-Gaussian controllers around
  them (:meth:`~mbrl_course.planning.local_models.LinearGaussianController.from_ilqr`),

      q_j(u_t | x_t) = N(ū_t + k_t + K_t (x_t − x̄_t),  s · Q_uu,t⁻¹),

  the maximum-entropy controller of the cost (the paper's DDP guiding distribution; s = ``covariance_scale``).
- **policy-iteration-algo: importance-sampled policy search**, the likelihood-ratio (REINFORCE) estimator
  with the guiding samples as the proposal. Notation: Levine & Koltun's trajectory ζ is the lecture's
  (i_1, u_1, …, i_T, u_T) (here x = i), their reward r(x, u) the lecture's g, their π_θ the lecture's μ_θ.
  With m samples ζ_i per start state drawn from the mixture q = Σ_k (m_k/m) q_k of the guiding controller
  and the policy π_θ̄ that was current when they were drawn (the paper also reuses the samples of earlier
  iterations; here those of the last few updates, each with its own proposal), the dynamics cancel in the ratio of trajectory densities,
  and for each prefix ζ_{1:t}

      log w_i,t(θ) = Σ_{t' ≤ t} log π_θ(u_t'^i | x_t'^i)  −  log Σ_k (m_k/m) Π_{t' ≤ t} q_k(u_t'^i | x_t'^i)
      Z_t(θ) = (1/m) Σ_i w_i,t(θ),        w̄_i,t = w_i,t / Σ_i' w_i',t         (self-normalised)

      Φ(θ) = Σ_{t=1}^T [ Σ_i w̄_i,t r(x_t^i, u_t^i)  +  w_r log Z_t(θ) ]                 (:func:`guided_objective`)

  The first term is the normalised importance-sampled estimate of E_{π_θ}[r_t]; its gradient
  Σ_i w̄_i,t (r_t^i − r̂_t) ∇_θ log w_i,t is REINFORCE's likelihood ratio with the estimate r̂_t as baseline,
  evaluated on samples π_θ did not draw. The regulariser w_r log Z_t, with ∇_θ log Z_t = Σ_i w̄_i,t
  ∇_θ log π_θ(ζ_i,1:t), is a log-likelihood of the samples under π_θ: it keeps the policy where the samples
  are (where the estimate can be trusted) and, early on, imitates the guiding controllers. Self-normalising
  makes the estimate biased but consistent (and of much lower variance than Σ_i w_i,t r_t^i / m, which is
  unbiased); ``tests/test_gps.py`` checks both against the closed form on a one-step linear-Gaussian problem.
  Samples from different start states have disjoint supports (x_0 is fixed within a condition), so the
  estimate is formed per start state and averaged over the C starts: a Monte Carlo average over p(x_0).

One **policy update** (:meth:`GPSLearner.policy_update`, once per episode: an *episodic*
:class:`~mbrl_course.agents.dyna.Learner` in the lecture's Dyna loop):

    x_0^j ~ p(x_0), j = 1..C                                    ▷ the env's own start distribution
    (x̄^j, ū^j, K^j, k^j, Q_uu^j) := iLQR(f, c = −g, x_0^j)      ▷ warm-started by π_θ's mean rollout
    ζ^j_{1..m_g} ~ q_j,  ζ^j_{m_g+1..m} ~ π_θ̄  in f             ▷ guiding and on-policy samples
    (first update only) θ := argmax_θ Σ_i log π_θ(ζ_i)           ▷ the paper's initialisation, ``init_steps``
    θ := argmax_θ Φ(θ) on the last ``keep_updates`` sample sets   ▷ ``policy_steps`` Adam steps

What the numbers say (``benchmarks/gps.py``): over T = 80 steps the weights are nearly degenerate (effective
sample size 1.0–1.2 of m = 12 per start state), so Σ_i w̄_i,t (r_t^i − r̂_t) ∇ log w_i,t is small and most of
the gradient is the regulariser's: a likelihood of the best sample of each prefix, i.e. reward-selected
imitation of the guiding samples. Not implemented from the paper: the adaptive w_r (raised when the new
policy is worse, lowered when better), adaptive guiding samples (iLQR on the cost plus −log π_θ), and L-BFGS
(Adam here, a fixed number of steps).

The policy alone (no planner) acts in the real env; with the true dynamics the real episodes only measure it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mbrl_course._checks import (
    as_tensor,
    check_choice,
    check_positive_float,
    check_positive_int,
    resolve_device,
)
from mbrl_course.agents.configs import DeltaMLPConfig, FitConfig
from mbrl_course.agents.dyna import DynaAgent
from mbrl_course.budget import Tier, by_budget
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import check_bounded_box_actions, make_env, reward_fn, termination_fn
from mbrl_course.models import TrueDynamics, rollout
from mbrl_course.planning.ilqr import ILQRConfig, cost_from_reward, ilqr, model_dynamics
from mbrl_course.planning.local_models import LinearGaussianController
from mbrl_course.rl.networks import GaussianPolicy
from mbrl_course.ssm._gaussian import log_prob as gaussian_log_prob
from mbrl_course.ssm._gaussian import rsample

__all__ = [
    "MODELS",
    "GPSConfig",
    "GPSLearner",
    "GPSLearnerConfig",
    "GuidedObjective",
    "GuidingSamples",
    "env_start_sampler",
    "gps_loop_kwargs",
    "guided_objective",
    "guiding_controllers",
    "make_gps",
    "mixture_log_density",
    "policy_log_prob",
    "sample_guided_trajectories",
]

MODELS: tuple[str, ...] = ("true", "mlp")
StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
StartSampler = Callable[[int, torch.Generator], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# The importance-sampled objective
# ---------------------------------------------------------------------------------------------


def mixture_log_density(step_log_probs: torch.Tensor, counts) -> torch.Tensor:
    """log q(ζ_{1:t}) of the proposal mixture q = Σ_k (m_k/m) q_k, for every prefix t.

        log q(ζ_{1:t}) = log Σ_k (m_k/m) exp(Σ_{t' ≤ t} log q_k(u_t' | x_t'))

    Args:
        step_log_probs: log q_k(u_t | x_t) of every sample under every component, ``(K, ..., T)``.
        counts: m_k, how many samples component k drew (K numbers ≥ 0, not all 0).
    Returns:
        ``(..., T)``.
    """
    counts = as_tensor("counts", counts, dtype=step_log_probs.dtype, device=step_log_probs.device).reshape(-1)
    if counts.shape[0] != step_log_probs.shape[0] or bool((counts < 0).any()) or float(counts.sum()) <= 0:
        raise ValueError(f"counts: expected {step_log_probs.shape[0]} sample counts m_k >= 0 (one per component of "
                         f"step_log_probs), not all 0, got {counts.tolist()}")
    log_mix = (counts / counts.sum()).log().reshape(-1, *([1] * (step_log_probs.dim() - 1)))
    return torch.logsumexp(log_mix + step_log_probs.cumsum(-1), dim=0)


class GuidedObjective(NamedTuple):
    """What :func:`guided_objective` returns."""

    objective: torch.Tensor
    """Φ(θ) = mean over start states of Σ_t [Σ_i w̄_i,t r_t^i + w_r log Z_t(θ)], differentiable in θ"""
    estimate: torch.Tensor
    """the importance-sampled return Σ_t Σ_i w̄_i,t r_t^i (or Σ_t (1/m) Σ_i w_i,t r_t^i unnormalised), per
    start state: ``(...)``"""
    log_Z: torch.Tensor
    """log Z_t(θ) = log (1/m) Σ_i w_i,t: ``(..., T)``"""
    weights: torch.Tensor
    """w̄_i,t (normalised) or w_i,t (unnormalised): ``(..., m, T)``"""
    effective_samples: torch.Tensor
    """1 / Σ_i w̄_i,t² of the last step, per start state: how many samples the estimate rests on ``(...)``"""


def guided_objective(policy_log_probs: torch.Tensor, proposal_log_density: torch.Tensor, reward: torch.Tensor, *,
                     regularizer: float = 0.0, normalized: bool = True) -> GuidedObjective:
    """Levine & Koltun's importance-sampled objective Φ(θ) of m samples per start state (see the module docstring).

        log w_i,t = Σ_{t' ≤ t} log π_θ(u_t'^i | x_t'^i) − log q(ζ^i_{1:t})
        Φ(θ) = Σ_t [ Σ_i w̄_i,t r_t^i + w_r log Z_t ],   Z_t = (1/m) Σ_i w_i,t,   w̄_i,t = w_i,t / (m Z_t)

    averaged over the leading (start-state) dimensions. With ``normalized=False`` the estimate is the plain
    (unbiased) Σ_t (1/m) Σ_i w_i,t r_t^i.

    Args:
        policy_log_probs: log π_θ(u_t^i | x_t^i), per step (differentiable in θ): ``(..., m, T)``.
        proposal_log_density: log q(ζ^i_{1:t}), per prefix (:func:`mixture_log_density`): ``(..., m, T)``.
        reward: r(x_t^i, u_t^i): ``(..., m, T)``.
        regularizer: w_r ≥ 0.
        normalized: self-normalised weights (the paper's) or plain ones.
    Returns:
        a :class:`GuidedObjective`.
    """
    if policy_log_probs.dim() < 2 or policy_log_probs.shape != proposal_log_density.shape \
            or policy_log_probs.shape != reward.shape:
        raise ValueError(f"policy_log_probs, proposal_log_density, reward: expected the same shape (..., m, T), got "
                         f"{tuple(policy_log_probs.shape)}, {tuple(proposal_log_density.shape)}, "
                         f"{tuple(reward.shape)}")
    regularizer = check_positive_float("regularizer", regularizer, allow_zero=True)
    samples = policy_log_probs.shape[-2]
    log_w = policy_log_probs.cumsum(-1) - proposal_log_density  # (..., m, T)
    log_Z = torch.logsumexp(log_w, dim=-2) - math.log(samples)  # (..., T)
    normalised = torch.softmax(log_w, dim=-2)
    weights = normalised if normalized else log_w.exp()
    estimate = (weights * reward).sum(-2) if normalized else (weights * reward).mean(-2)  # (..., T)
    objective = (estimate + regularizer * log_Z).sum(-1).mean()
    ess = 1.0 / normalised[..., -1].square().sum(-1)
    return GuidedObjective(objective, estimate.sum(-1), log_Z, weights, ess.detach())


# ---------------------------------------------------------------------------------------------
# Guiding distributions and samples
# ---------------------------------------------------------------------------------------------


def guiding_controllers(result, covariance_scale: float = 1.0, min_eigenvalue: float = 1e-6) -> LinearGaussianController:
    """The C linear-Gaussian controllers q_j iLQR yields around its C trajectories, stacked: K ``(C, T, m, n)``,
    k ``(C, T, m)``, covariance ``(C, T, m, m)`` (:meth:`LinearGaussianController.from_ilqr` for each).

    Where iLQR stopped short of a local minimum (out of iterations, or it gave up) Q_uu + μI may not be
    positive definite; its eigenvalues are then raised to ``min_eigenvalue`` · max(1, the largest |eigenvalue|)
    first, so that s · Q_uu⁻¹ is a covariance (wide along the directions the cost does not curve up).
    """
    eye = torch.eye(result.Q_uu.shape[-1], dtype=result.Q_uu.dtype, device=result.Q_uu.device)
    values, vectors = torch.linalg.eigh(result.Q_uu + result.mu.reshape(-1, 1, 1, 1) * eye)
    floor = min_eigenvalue * values.abs().amax(-1, keepdim=True).clamp(min=1.0)
    projected = (vectors * values.clamp(min=floor).unsqueeze(-2)) @ vectors.transpose(-1, -2)
    result = replace(result, Q_uu=projected, mu=torch.zeros_like(result.mu))
    parts = [LinearGaussianController.from_ilqr(result, j, covariance_scale) for j in range(result.states.shape[0])]
    return LinearGaussianController(K=torch.stack([p.K for p in parts]), k=torch.stack([p.k for p in parts]),
                                    covariance=torch.stack([p.covariance for p in parts]))


@dataclass
class GuidingSamples:
    """m trajectories from each of C start states, ``m_g`` from the guiding controller q_j, then ``m − m_g`` from π_θ̄."""

    obs: torch.Tensor
    """x_1 … x_{T+1}: (C, m, T+1, n)"""
    action: torch.Tensor
    """u_t as drawn, before the clip to the action box (the densities refer to it): (C, m, T, A)"""
    reward: torch.Tensor
    """r(x_t, clip(u_t), x_{t+1}), 0 after a termination: (C, m, T)"""
    alive: torch.Tensor
    """True while the trajectory runs: (C, m, T) bool"""
    proposal_log_density: torch.Tensor
    """log q(ζ_{1:t}) under the mixture of the samplers: (C, m, T)"""
    guided: int
    """m_g, the samples per start state drawn from q_j (the first m_g)"""


def _controller_log_prob(controller: LinearGaussianController, t: int, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """log q_j(u | x) = log N(u | K_t x + k_t, Σ_u,t) for the stacked controllers; ``x (C, m, n)`` -> ``(C, m)``."""
    mean = (controller.K[:, t].unsqueeze(1) @ x.unsqueeze(-1)).squeeze(-1) + controller.k[:, t].unsqueeze(1)
    return gaussian_log_prob(u, mean, torch.linalg.cholesky(controller.covariance[:, t]).unsqueeze(1))


def policy_log_prob(policy: GaussianPolicy, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """log π_θ(u | x) of an env-unit action u = c + s ⊙ ũ (unclipped): log π_θ(ũ | x) − Σ_a log s_a, ``(...)``."""
    box = policy.box
    raw = (action.to(box.scale.dtype) - box.center) / box.scale
    return policy.log_prob(obs.to(box.scale.dtype), raw) - box.scale.log().sum()


@torch.no_grad()
def sample_guided_trajectories(model, controllers: LinearGaussianController, policy: GaussianPolicy,
                               start_obs: torch.Tensor, *, guided: int, on_policy: int, reward_fn: StepFn,
                               termination_fn: StepFn | None = None,
                               generator: torch.Generator | None = None) -> GuidingSamples:
    """ζ ~ q_j (``guided`` per start) and ζ ~ π_θ̄ (``on_policy`` per start) in f, one batched rollout.

    For t = 0 … T−1:  u_t = K_t x_t + k_t + L_t ε (Σ_u,t = L_t L_tᵀ) or u_t = c + s ⊙ ũ_t, ũ_t ~ π_θ̄(· | x_t);
    x_{t+1} = f(x_t, clip(u_t)). Every sample's u_t is scored under both samplers, and the proposal density of
    each prefix is the mixture's (:func:`mixture_log_density`).

    Args:
        model: f, a model of the contract (its propagator steps the states).
        controllers: the C stacked guiding controllers (:func:`guiding_controllers`), T steps.
        policy: π_θ̄, a :class:`~mbrl_course.rl.GaussianPolicy`.
        start_obs: x_0^j, ``(C, n)``.
    Returns:
        :class:`GuidingSamples`.
    """
    guided = check_positive_int("guided", guided, allow_zero=True)
    on_policy = check_positive_int("on_policy", on_policy, allow_zero=True)
    if guided + on_policy == 0:
        raise ValueError("guided, on_policy: expected at least one sample per start state, got 0 and 0")
    conditions, horizon = controllers.k.shape[0], controllers.k.shape[1]
    if start_obs.dim() != 2 or start_obs.shape[0] != conditions:
        raise ValueError(f"start_obs: expected one start state per controller, shape ({conditions}, n), got "
                         f"{tuple(start_obs.shape)}")
    samples = guided + on_policy
    dtype, device = model.dtype, model.device
    low, high = policy.box.low.to(dtype), policy.box.high.to(dtype)
    from_guide = (torch.arange(samples, device=device) < guided).reshape(1, samples, 1)
    drawn: list[torch.Tensor] = []
    scores: list[torch.Tensor] = []

    def act(obs: torch.Tensor) -> torch.Tensor:  # obs (C·m, n) -> the clipped u; remembers u and its scores
        t = len(drawn)
        x = obs.reshape(conditions, samples, -1)
        mean = (controllers.K[:, t].unsqueeze(1) @ x.unsqueeze(-1)).squeeze(-1) + controllers.k[:, t].unsqueeze(1)
        noise = torch.randn(mean.shape, generator=generator, dtype=dtype, device=device)
        guide_u = rsample(mean, torch.linalg.cholesky(controllers.covariance[:, t]).unsqueeze(1), noise)
        policy_u = policy.box.center + policy.box.scale * policy.policy_sample(
            x.to(policy.box.scale.dtype), generator).raw_action
        u = torch.where(from_guide, guide_u, policy_u.to(dtype))
        drawn.append(u)
        scores.append(torch.stack([_controller_log_prob(controllers, t, x, u), policy_log_prob(policy, x, u).to(dtype)]))
        return torch.maximum(torch.minimum(u, high), low).reshape(conditions * samples, -1)

    start = start_obs.to(dtype=dtype, device=device).repeat_interleave(samples, dim=0)
    out = rollout(model, start, policy=act, horizon=horizon, reward_fn=reward_fn, termination_fn=termination_fn)
    alive = out.alive.T.reshape(conditions, samples, horizon)
    step_scores = torch.stack(scores, -1) * alive  # (2, C, m, T): a step after the end adds nothing
    return GuidingSamples(
        obs=out.obs.transpose(0, 1).reshape(conditions, samples, horizon + 1, -1),
        action=torch.stack(drawn, 2), reward=out.reward.T.reshape(conditions, samples, horizon), alive=alive,
        proposal_log_density=mixture_log_density(step_scores, [guided, on_policy]), guided=guided)


def env_start_sampler(env_id: str, **env_kwargs) -> StartSampler:
    """p(x_0) of the env itself: ``sample(C, generator) -> (C, n)``, the first observations of C resets of a
    copy of the env, each with a seed drawn from ``generator`` (the training start distribution, exactly)."""
    env = make_env(env_id, **env_kwargs)

    def sample(count: int, generator: torch.Generator) -> torch.Tensor:
        seeds = torch.randint(0, 2**31 - 1, (count,), generator=generator).tolist()
        return torch.as_tensor(np.stack([env.reset(seed=int(s))[0] for s in seeds]), dtype=torch.float64)

    return sample


# ---------------------------------------------------------------------------------------------
# The learner
# ---------------------------------------------------------------------------------------------


@dataclass
class GPSLearnerConfig:
    """The policy update of GPS: guiding samples, the objective and its optimiser."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden widths of the policy's mean network m_θ (π_θ(u | x) = N(m_θ(x), diag σ²), tanh units)."""
    init_log_std: float = -0.5
    """log σ of the policy at the start (normalised action units)."""
    conditions: int = 8
    """C, start states x_0 ~ p(x_0) per update (one iLQR trajectory and guiding controller each)."""
    horizon: int = 80
    """T, steps of every iLQR trajectory and sample (Pendulum: 4 s, time to swing up and settle)."""
    guided_samples: int = 8
    """m_g, samples per start state from the guiding controller q_j."""
    policy_samples: int = 4
    """m − m_g, samples per start state from the current policy π_θ̄ (the paper's samples of earlier policies)."""
    covariance_scale: float = 0.1
    """s: the guiding controller's covariance is s · Q_uu⁻¹ (s = 1, the maximum-entropy controller, spreads the
    Pendulum's samples over the whole torque box: the policy imitated noise and did not swing up in 8 updates)."""
    regularizer: float = 0.1
    """w_r, the weight of Σ_t log Z_t(θ) (per-step rewards are of order 1 on Pendulum)."""
    policy_steps: int = 300
    """Adam steps on −Φ(θ) per update."""
    init_steps: int = 300
    """Adam steps of the paper's initialisation before the first update's Φ steps: θ := argmax_θ Σ_i log π_θ(ζ_i)
    on the first guiding samples (behaviour cloning of the guiding controllers); 0: none."""
    lr: float = 3e-3
    """Adam's learning rate."""
    max_grad_norm: float | None = 10.0
    """Clip the gradient's norm before each step (None: no clipping)."""
    ilqr: ILQRConfig = field(default_factory=lambda: ILQRConfig(iterations=25, raise_on_failure=False))
    """iLQR's settings (``raise_on_failure`` is forced off: a start state iLQR gives up on keeps its best plan)."""
    restarts: int = 0
    """iLQR runs per start state besides the one warm-started by π_θ's mean rollout: from u = 0, then from
    uniform random controls; the cheapest plan wins (a fresh π_θ's mean rollout is already u ≈ 0)."""
    keep_updates: int = 3
    """Φ(θ) sums over the sample sets of this many most recent updates (the paper reuses earlier samples;
    each set keeps the proposal density it was drawn with, so every start state's estimate stays valid)."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(check_positive_int("hidden_sizes", h) for h in self.hidden_sizes)
        for name in ("conditions", "horizon", "policy_steps", "keep_updates"):
            setattr(self, name, check_positive_int(name, getattr(self, name)))
        for name in ("guided_samples", "policy_samples", "restarts", "init_steps"):
            setattr(self, name, check_positive_int(name, getattr(self, name), allow_zero=True))
        if self.guided_samples + self.policy_samples < 2:
            raise ValueError(f"guided_samples, policy_samples: expected m = m_g + m_p >= 2 samples per start state "
                             f"(normalised weights of one sample are all 1), got {self.guided_samples} + "
                             f"{self.policy_samples}")
        if self.guided_samples == 0:
            raise ValueError("guided_samples: GPS needs guiding samples, expected m_g >= 1, got 0")
        self.covariance_scale = check_positive_float("covariance_scale", self.covariance_scale)
        self.regularizer = check_positive_float("regularizer", self.regularizer, allow_zero=True)
        self.lr = check_positive_float("lr", self.lr)
        if self.max_grad_norm is not None:
            self.max_grad_norm = check_positive_float("max_grad_norm", self.max_grad_norm)
        if not isinstance(self.ilqr, ILQRConfig):
            raise TypeError(f"ilqr: expected an ILQRConfig, got {type(self.ilqr).__name__}")


class GPSLearner:
    """GPS's policy update (an episodic :class:`~mbrl_course.agents.dyna.Learner`) and its neural policy π_θ.

    ``policy_update(f, D_real)``: C starts from p(x_0), iLQR on f from each (warm-started by the mean rollout of
    π_θ, plus ``restarts``), guiding and on-policy samples in f, then ``policy_steps`` Adam steps on −Φ(θ)
    (:func:`guided_objective`) summed over the sample sets of the last ``keep_updates`` updates. D_real is not used by the update itself (the model's refit uses it).

    Args:
        policy: π_θ, a :class:`~mbrl_course.rl.GaussianPolicy`.
        reward_fn, termination_fn: the env's batched g(i, u, i') and done (or None).
        start_sampler: p(x_0), ``(C, generator) -> (C, n)`` (:func:`env_start_sampler`).
        config: :class:`GPSLearnerConfig`.
        progress: a tqdm bar over the Adam steps.
        device: where π_θ and the generators live. seed: seeds them.
    """

    episodic = True

    def __init__(self, policy: GaussianPolicy, *, reward_fn: StepFn, start_sampler: StartSampler,
                 termination_fn: StepFn | None = None, config: GPSLearnerConfig | None = None,
                 progress: bool = False, device: torch.device | str = "cpu", seed: int | None = 0):
        if not isinstance(policy, GaussianPolicy):
            raise TypeError(f"policy: expected a GaussianPolicy (π_θ with a density), got {type(policy).__name__}")
        self.config = GPSLearnerConfig() if config is None else config
        if not isinstance(self.config, GPSLearnerConfig):
            raise TypeError(f"config: expected a GPSLearnerConfig, got {type(self.config).__name__}")
        self.device = resolve_device(device)
        self.policy = policy.to(self.device)
        self.dtype = policy.log_std.dtype
        self.reward_fn, self.termination_fn, self.start_sampler = reward_fn, termination_fn, start_sampler
        self.progress = progress
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.config.lr)
        base = 0 if seed is None else int(seed)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(base + 7)
        """the guiding and on-policy samples' noise, and iLQR's random restarts"""
        self.start_generator = torch.Generator().manual_seed(base + 8)
        """the start states x_0 ~ p(x_0) (CPU: the env resets)"""
        self.act_generator = torch.Generator(device=self.device)
        self.act_generator.manual_seed(base + 9)
        """π_θ's noise in the real env"""
        self.updates = 0
        self.last: dict[str, float] = {}
        self.last_samples: GuidingSamples | None = None
        self.history: list[GuidingSamples] = []
        """the sample sets of the last ``keep_updates`` updates (Φ(θ) sums over them)"""
        self.last_plan = None
        self._loss = torch.zeros((), dtype=self.dtype, device=self.device)

    # ------------------------------------------------------------------ the policy π_θ
    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """u ~ π_θ(u | i), clipped to the box (the clipped mean when ``deterministic``): ``(A,)``."""
        state = torch.as_tensor(np.asarray(obs), dtype=self.dtype, device=self.device)
        return self.policy.policy_sample(state[None], self.act_generator, deterministic).action[0].cpu().numpy()

    def reset(self) -> None:
        """Start of an episode (π_θ keeps no state)."""

    # ------------------------------------------------------------------ guiding distributions
    def plan(self, model, start_obs: torch.Tensor):
        """iLQR on f from ``start_obs (C, n)``: the best of the run warm-started by π_θ's mean rollout and the
        ``restarts`` (u = 0, then uniform random controls). Returns the :class:`~mbrl_course.planning.ILQRResult`."""
        cfg = self.config
        f = model_dynamics(model)
        cost = cost_from_reward(self.reward_fn, f)
        dtype, device = model.dtype, model.device
        low, high = self.policy.box.low.to(dtype), self.policy.box.high.to(dtype)
        mean_policy = lambda obs: self.policy.policy_sample(obs.to(self.dtype), deterministic=True).action.to(dtype)  # noqa: E731
        with torch.no_grad():
            warm = rollout(model, start_obs, policy=mean_policy, horizon=cfg.horizon, reward_fn=self.reward_fn)
        inits = [warm.action.transpose(0, 1)]  # (C, T, m)
        for r in range(cfg.restarts):
            if r == 0:
                inits.append(torch.zeros_like(inits[0]))
            else:
                u = torch.rand(inits[0].shape, generator=self.generator, dtype=dtype, device=device)
                inits.append(low + (high - low) * u)
        runs = len(inits)
        result = ilqr(f, cost, start_obs.repeat(runs, 1), torch.cat(inits), low, high,
                      replace(cfg.ilqr, raise_on_failure=False))
        conditions = start_obs.shape[0]
        best = result.cost.reshape(runs, conditions).argmin(0) * conditions + torch.arange(conditions, device=device)
        return type(result)(**{name: getattr(result, name)[:, best] if name == "costs" else getattr(result, name)[best]
                               for name in result.__dataclass_fields__})

    # ------------------------------------------------------------------ the policy update
    def objective(self, samples: GuidingSamples | list[GuidingSamples]) -> GuidedObjective:
        """Φ(θ) on ``samples`` (:func:`guided_objective`), with log π_θ recomputed (differentiable); for a list of
        sample sets (of equal m and T) their start states are pooled."""
        if isinstance(samples, list):
            samples = GuidingSamples(**{name: torch.cat([getattr(s, name) for s in samples])
                                        for name in ("obs", "action", "reward", "alive", "proposal_log_density")},
                                     guided=samples[0].guided)
        obs = samples.obs[:, :, :-1]
        step = policy_log_prob(self.policy, obs, samples.action.to(self.dtype)) * samples.alive
        reward = samples.reward.to(self.dtype)
        return guided_objective(step, samples.proposal_log_density.to(self.dtype), reward,
                                regularizer=self.config.regularizer)

    def policy_update(self, model, real_buffer: ReplayBuffer | None = None) -> dict[str, float]:
        """θ := argmax Φ(θ) on fresh guiding samples of iLQR on f (see the module docstring).

        Returns the guiding plans' mean return, the samples' mean return, Φ and the effective sample size.
        """
        if model is None:
            raise ValueError("model: GPS runs iLQR on a dynamics model f (TrueDynamics or a learned one), got None")
        cfg = self.config
        start = as_tensor("start_obs", self.start_sampler(cfg.conditions, self.start_generator),
                          dtype=model.dtype, device=model.device)
        if start.dim() != 2 or start.shape[0] != cfg.conditions:
            raise ValueError(f"start_sampler: expected start states of shape ({cfg.conditions}, n), got "
                             f"{tuple(start.shape)}")
        self.last_plan = plan = self.plan(model, start)
        controllers = guiding_controllers(plan, cfg.covariance_scale)
        samples = sample_guided_trajectories(model, controllers, self.policy, start, guided=cfg.guided_samples,
                                             on_policy=cfg.policy_samples, reward_fn=self.reward_fn,
                                             termination_fn=self.termination_fn, generator=self.generator)
        self.last_samples = samples
        params = list(self.policy.parameters())
        if not self.history:  # the paper's initialisation: maximum likelihood of the guiding samples
            guided = slice(0, samples.guided)
            for _ in tqdm(range(cfg.init_steps), desc="GPS init", disable=not self.progress, leave=False):
                step = policy_log_prob(self.policy, samples.obs[:, guided, :-1], samples.action[:, guided])
                loss = -(step * samples.alive[:, guided]).sum() / samples.alive[:, guided].sum()
                self._step(loss, params)
        self.history = [*self.history, samples][-cfg.keep_updates:]
        for _ in tqdm(range(cfg.policy_steps), desc="GPS policy", disable=not self.progress, leave=False):
            result = self.objective(self.history)
            loss = -result.objective / cfg.horizon
            self._step(loss, params)
        self._loss = loss.detach()
        self.last = {"loss": float(self._loss), "plan_return": float(-plan.cost.mean()),
                     "sample_return": float(samples.reward.sum(-1).mean()),
                     "is_return": float(result.estimate.detach().mean()), "ess": float(result.effective_samples.mean())}
        return self.last

    def _step(self, loss: torch.Tensor, params: list[nn.Parameter]) -> None:
        """One Adam step on ``loss`` (gradient norm clipped to ``max_grad_norm``)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
        self.optimizer.step()
        self.updates += 1

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` if Φ or a policy parameter became NaN/inf."""
        if not (bool(torch.isfinite(self._loss)) and all(bool(torch.isfinite(p).all()) for p in self.policy.parameters())):
            raise FloatingPointError("GPS: the importance-sampled objective or the policy's parameters became NaN/inf; "
                                     "the run stopped (try a smaller lr or a larger regularizer)")

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The policy, Adam's state, the three generators and the update count."""
        return {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "start_generator": self.start_generator.get_state(),
                "act_generator": self.act_generator.get_state(), "updates": self.updates,
                "history": [vars(samples).copy() for samples in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.start_generator.set_state(state["start_generator"])
        self.act_generator.set_state(state["act_generator"])
        self.updates = int(state["updates"])
        self.history = [GuidingSamples(**samples) for samples in state.get("history", [])]


# ---------------------------------------------------------------------------------------------
# Config, builder and the loop's arguments
# ---------------------------------------------------------------------------------------------


@dataclass
class GPSConfig:
    """Hyperparameters of GPS. :meth:`for_budget` gives the tier's defaults."""

    learner: GPSLearnerConfig = field(default_factory=GPSLearnerConfig)
    """The policy update: guiding samples, Φ(θ), Adam."""
    model: str = "true"
    """f for iLQR: "true" (the env's equations, the paper's known dynamics) or "mlp" (a DeltaMLP refit on D_real)."""
    mlp: DeltaMLPConfig = field(default_factory=lambda: DeltaMLPConfig(hidden_sizes=(200, 200)))
    """The learned f_ψ when ``model="mlp"``."""
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=50))
    """Each refit of the learned f_ψ (after every episode)."""

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> GPSConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None)."""
        paper = GPSLearnerConfig()
        return by_budget(
            smoke=cls(learner=replace(paper, hidden_sizes=(16, 16), conditions=2, horizon=15, guided_samples=3,
                                      policy_samples=1, policy_steps=5, init_steps=5,
                                      ilqr=replace(paper.ilqr, iterations=5), keep_updates=2),
                      fit=FitConfig(epochs=5, max_updates=50)),
            default=cls(),
            full=cls(learner=replace(paper, conditions=16, guided_samples=16, policy_samples=8, policy_steps=500,
                                     restarts=2, keep_updates=10)),
            tier=tier,
        )


def make_gps(env: gym.Env, env_id: str, config: GPSConfig, *, device="cpu", seed: int | None = 0,
             progress: bool = False) -> DynaAgent:
    """Build GPS for ``env``: f (the true dynamics or a DeltaMLP) + :class:`GPSLearner` with a fresh π_θ, as a
    :class:`DynaAgent` whose learner updates once per episode."""
    check_bounded_box_actions(env)
    if seed is not None:
        torch.manual_seed(seed)  # π_θ's (and a learned f_ψ's) initial weights
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    if config.model == "true":
        model = TrueDynamics(env_id, device=device, dtype=torch.float64)
    else:
        model = config.mlp.build(obs_dim, act_dim, device=device)
    cfg = config.learner
    policy = GaussianPolicy(obs_dim, env.action_space.low, env.action_space.high, cfg.hidden_sizes,
                            init_log_std=cfg.init_log_std, device=device, dtype=torch.float64)
    learner = GPSLearner(policy, reward_fn=reward_fn(env_id), termination_fn=termination_fn(env_id),
                         start_sampler=env_start_sampler(env_id), config=cfg, progress=progress, device=device,
                         seed=seed)
    return DynaAgent(learner, model, fit_kwargs=config.fit.kwargs(), model_every=1, updates_per_step=1,
                     device=device, seed=seed)


def gps_loop_kwargs(config: GPSConfig) -> dict:
    """The Dyna loop's arguments for GPS: no random steps (the first episode runs the fresh π_θ)."""
    return {"seed_steps": 0}
