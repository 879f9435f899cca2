"""Actor-critic in imagination (Dreamer, Hafner et al., 2020): λ-returns and the two losses.

Dreamer learns an actor q_φ(a_t | s_t) and a value v_ψ(s_t) purely from trajectories imagined in the
world model, starting from posterior states of real sequences. Along one imagined trajectory
s_0, a_0, r_0, s_1, …, s_H (r_t the reward predicted for the step from s_t to s_{t+1}; c_t ∈ [0, 1] the
continuation after it: the discount γ, times 1 − done where episodes end), the λ-return mixes the
n-step returns of every length:

    V_N^n(s_t) = Σ_{j=t}^{h−1} (Π_{i=t}^{j−1} c_i) r_j + (Π_{i=t}^{h−1} c_i) v(s_h),   h = min(t + n, H)
    V_λ(s_t)   = (1 − λ) Σ_{n=1}^{H−t−1} λ^{n−1} V_N^n(s_t) + λ^{H−t−1} V_N^{H−t}(s_t)

which is the recursion (Dreamer's eq. 6, computed backwards from the horizon)

    V_λ(s_t) = r_t + c_t ((1 − λ) v(s_{t+1}) + λ V_λ(s_{t+1})),    V_λ(s_H) = v(s_H).

λ = 0 gives the one-step TD target r_t + c_t v(s_{t+1}); λ = 1 the discounted H-step return bootstrapped
with v(s_H). The losses (Dreamer's eqs. 7 and 8, with the weights w_t = Π_{i<t} c_i that discount later
imagined steps and drop those after an episode's end):

    actor:  max_φ Σ_t w_t V_λ(s_t)            (gradients flow through the imagined states into the actions:
                                               the dynamics are differentiable, no REINFORCE needed)
    value:  min_ψ Σ_t w_t ½ (v_ψ(s_t) − sg(V_λ(s_t)))²     (sg: stop-gradient; the target is held fixed)

The functions here are plain tensor maths, batched over any trailing dimensions; the time axis is the
first one. :class:`ImaginationActorCritic` (below) is the learner that uses them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mbrl_course._checks import check_positive_float, check_positive_int, resolve_device
from mbrl_course.budget import Tier, by_budget
from mbrl_course.rl.networks import TanhGaussianPolicy, mlp

if TYPE_CHECKING:  # the learner talks to any RecurrentSSM; rl does not import ssm at run time
    from mbrl_course.ssm.rssm import LatentState, RecurrentSSM

__all__ = [
    "ActorCriticConfig",
    "ImaginationActorCritic",
    "ImaginedLosses",
    "actor_loss",
    "discount_weights",
    "lambda_returns",
    "lambda_returns_vectorised",
    "value_loss",
]


def _check_lambda(lam: float) -> float:
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam: expected λ in [0, 1], got {lam}")
    return lam


def _check_trajectory(rewards: torch.Tensor, values: torch.Tensor,
                      continuation: torch.Tensor | float) -> torch.Tensor:
    """Shapes: rewards (H, ...), values (H+1, ...), continuation (H, ...) or a number; returns c as a tensor."""
    if not isinstance(rewards, torch.Tensor) or rewards.ndim < 1 or rewards.shape[0] < 1:
        got = tuple(rewards.shape) if isinstance(rewards, torch.Tensor) else type(rewards).__name__
        raise ValueError(f"rewards: expected a tensor of shape (H, ...) with H ≥ 1, got {got}")
    H = rewards.shape[0]
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != (H + 1, *rewards.shape[1:]):
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"values: expected shape {(H + 1, *rewards.shape[1:])} (v(s_0) .. v(s_H), one more step "
                         f"than rewards), got {got}")
    if isinstance(continuation, torch.Tensor):
        if tuple(continuation.shape) != tuple(rewards.shape):
            raise ValueError(f"continuation: expected shape {tuple(rewards.shape)} (as rewards) or a number, "
                             f"got {tuple(continuation.shape)}")
        return continuation.to(rewards.dtype)
    c = check_positive_float("continuation", continuation, allow_zero=True)
    if c > 1.0:
        raise ValueError(f"continuation: expected a discount in [0, 1], got {c}")
    return torch.full_like(rewards, c)


def lambda_returns(rewards: torch.Tensor, values: torch.Tensor, continuation: torch.Tensor | float,
                   lam: float = 0.95) -> torch.Tensor:
    """V_λ(s_t) for t = 0..H−1 by the backward recursion (the module docstring).

    V_λ(s_H) = v(s_H);   V_λ(s_t) = r_t + c_t ((1 − λ) v(s_{t+1}) + λ V_λ(s_{t+1})).

    ``rewards: (H, ...)`` r_t; ``values: (H+1, ...)`` v(s_t) for t = 0..H; ``continuation``: c_t, ``(H, ...)``
    or one discount γ for all steps; ``lam`` λ ∈ [0, 1]. Returns ``(H, ...)``; differentiable in all inputs.
    """
    c = _check_trajectory(rewards, values, continuation)
    lam = _check_lambda(lam)
    H = rewards.shape[0]
    returns = []
    next_return = values[H]
    for t in reversed(range(H)):
        next_return = rewards[t] + c[t] * ((1.0 - lam) * values[t + 1] + lam * next_return)
        returns.append(next_return)
    return torch.stack(returns[::-1])


def lambda_returns_vectorised(rewards: torch.Tensor, values: torch.Tensor, continuation: torch.Tensor | float,
                              lam: float = 0.95) -> torch.Tensor:
    """The same V_λ without a Python loop over time: unrolling the recursion,

        V_λ(s_t) = Σ_{k=t}^{H−1} (Π_{i=t}^{k−1} λ c_i) x_k,
        x_k = r_k + c_k (1 − λ) v(s_{k+1})  for k < H − 1,   x_{H−1} = r_{H−1} + c_{H−1} v(s_H),

    a triangular matrix of products of λ c_i times the vector x (O(H²) memory, one matmul).
    Arguments and result as :func:`lambda_returns`.
    """
    c = _check_trajectory(rewards, values, continuation)
    lam = _check_lambda(lam)
    H = rewards.shape[0]
    mix = torch.full((H,) + (1,) * (rewards.ndim - 1), 1.0 - lam, dtype=rewards.dtype, device=rewards.device)
    mix[-1] = 1.0                                                       # the last step bootstraps fully from v(s_H)
    x = rewards + c * mix * values[1:]                                  # (H, ...)
    # P[t, k] = Π_{i=t}^{k−1} λ c_i for k ≥ t (empty product 1), 0 for k < t: a cumulative product along k
    # of the factors λ c_{k−1} that lie inside row t's window (k > t), and 1 outside it (no division, so c = 0 is fine)
    previous = torch.cat([torch.ones_like(c[:1]), lam * c[:-1]])       # [k] -> λ c_{k−1}
    idx = torch.arange(H, device=rewards.device)
    after = (idx[None, :] > idx[:, None]).view(H, H, *([1] * (c.ndim - 1)))      # [t, k]: k > t
    factors = torch.where(after, previous.unsqueeze(0), torch.ones_like(previous).unsqueeze(0))
    on_or_after = (idx[None, :] >= idx[:, None]).view(H, H, *([1] * (c.ndim - 1)))
    weights = torch.cumprod(factors, 1) * on_or_after                   # (H, H, ...)
    return (weights * x.unsqueeze(0)).sum(1)


def discount_weights(continuation: torch.Tensor) -> torch.Tensor:
    """w_t = Π_{i<t} c_i for t = 0..H (w_0 = 1), detached: how much each imagined step counts in the losses.

    ``continuation: (H, ...)``. Returns ``(H+1, ...)``. With c_i = γ (1 − done_i) the steps after an imagined
    episode end get weight 0, and later steps count less, as Dreamer weights them.
    """
    if not isinstance(continuation, torch.Tensor) or continuation.ndim < 1:
        got = tuple(continuation.shape) if isinstance(continuation, torch.Tensor) else type(continuation).__name__
        raise ValueError(f"continuation: expected a tensor of shape (H, ...), got {got}")
    c = continuation.detach()
    return torch.cat([torch.ones_like(c[:1]), torch.cumprod(c, 0)], 0)


def value_loss(values: torch.Tensor, returns: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """min_ψ (1/N) Σ_t w_t ½ (v_ψ(s_t) − sg(V_λ(s_t)))²: the value's regression onto fixed λ-returns.

    ``values: (H, ...)`` v_ψ(s_t) for t = 0..H−1 (computed on detached states, so the loss reaches ψ only),
    ``returns: (H, ...)`` V_λ (detached here: a target, not something to move), ``weights: (H, ...)`` w_t
    (None: all 1). Returns a scalar (the mean over steps and batch).
    """
    if tuple(values.shape) != tuple(returns.shape):
        raise ValueError(f"values: expected the shape of returns {tuple(returns.shape)}, got {tuple(values.shape)}")
    w = torch.ones_like(values) if weights is None else weights.detach()
    if tuple(w.shape) != tuple(values.shape):
        raise ValueError(f"weights: expected shape {tuple(values.shape)}, got {tuple(w.shape)}")
    return (w * 0.5 * (values - returns.detach()).square()).mean()


def actor_loss(returns: torch.Tensor, weights: torch.Tensor | None = None,
               entropy: torch.Tensor | None = None, entropy_scale: float = 0.0) -> torch.Tensor:
    """−(1/N) Σ_t w_t (V_λ(s_t) + η H[q_φ(· | s_t)]): maximise the λ-returns by backpropagating through them.

    ``returns: (H, ...)`` V_λ, NOT detached: its gradient runs through the imagined rewards, values and
    states into the actions a_t ~ q_φ(a_t | s_t) (reparameterised), which is how Dreamer's actor learns.
    ``weights: (H, ...)`` w_t (detached here; None: all 1); ``entropy: (H, ...)`` of the actor's
    distribution with scale η = ``entropy_scale`` (0: Dreamer's v1 actor, no entropy term). Returns a scalar.
    """
    w = torch.ones_like(returns) if weights is None else weights.detach()
    if tuple(w.shape) != tuple(returns.shape):
        raise ValueError(f"weights: expected shape {tuple(returns.shape)}, got {tuple(w.shape)}")
    objective = returns
    if entropy is not None and entropy_scale:
        if tuple(entropy.shape) != tuple(returns.shape):
            raise ValueError(f"entropy: expected shape {tuple(returns.shape)}, got {tuple(entropy.shape)}")
        objective = objective + entropy_scale * entropy
    return -(w * objective).mean()


# ----------------------------------------------------------------------------------------------- the learner
def _hidden_sizes(tier: Tier | None = None) -> tuple[int, ...]:
    """The actor's and value's hidden widths of a compute tier: smaller networks on a CPU."""
    return by_budget(smoke=(32, 32), default=(128, 128), full=(400, 400, 400), tier=tier)


@dataclass
class ActorCriticConfig:
    """Hyperparameters of :class:`ImaginationActorCritic` (defaults: Dreamer v1, Hafner et al., 2020)."""

    horizon: int = 15
    """H, imagined steps from each posterior state"""
    gamma: float = 0.99
    """γ, the discount (the continuation c_t = γ of every imagined step: there is no termination head)"""
    lam: float = 0.95
    """λ of the λ-returns (0: one-step TD targets, 1: H-step returns)"""
    actor_lr: float = 8e-5
    """Adam's step size for the actor φ"""
    value_lr: float = 8e-5
    """Adam's step size for the value ψ"""
    adam_eps: float = 1e-7
    """Adam's ε (Dreamer v1: TensorFlow's default 1e-7)"""
    grad_clip: float | None = 100.0
    """clip each network's gradient to this global norm (None: no clipping)"""
    hidden_sizes: tuple[int, ...] = field(default_factory=_hidden_sizes)
    """hidden widths of the actor and of the value (smoke (32, 32), default (128, 128), full Dreamer's 3 × 400)"""
    entropy_scale: float = 0.0
    """η of the actor's entropy bonus (0: Dreamer v1, no bonus; v2 uses 1e-4 … 3e-4)"""
    target_network: bool = False
    """bootstrap the λ-returns from a slowly updated copy v_ψ̄ of the value (Dreamer v2) instead of v_ψ itself"""
    target_update_period: int = 100
    """update the target copy every this many updates"""
    target_tau: float = 1.0
    """ψ̄ := (1 − τ) ψ̄ + τ ψ at each target update (1: a hard copy, Dreamer v2)"""
    exploration_noise: float = 0.3
    """σ of the Gaussian noise ``act(..., explore=True)`` adds, in units of the box's half-width (Dreamer v1: 0.3)"""

    def __post_init__(self) -> None:
        self.horizon = check_positive_int("horizon", self.horizon)
        self.gamma = check_positive_float("gamma", self.gamma, allow_zero=True)
        if self.gamma > 1.0:
            raise ValueError(f"gamma: expected a discount in [0, 1], got {self.gamma}")
        self.lam = _check_lambda(self.lam)
        self.actor_lr = check_positive_float("actor_lr", self.actor_lr)
        self.value_lr = check_positive_float("value_lr", self.value_lr)
        self.adam_eps = check_positive_float("adam_eps", self.adam_eps)
        if self.grad_clip is not None:
            self.grad_clip = check_positive_float("grad_clip", self.grad_clip)
        self.hidden_sizes = tuple(check_positive_int("hidden_sizes", h) for h in self.hidden_sizes)
        self.entropy_scale = check_positive_float("entropy_scale", self.entropy_scale, allow_zero=True)
        self.target_update_period = check_positive_int("target_update_period", self.target_update_period)
        self.target_tau = check_positive_float("target_tau", self.target_tau)
        if self.target_tau > 1.0:
            raise ValueError(f"target_tau: expected a number in (0, 1], got {self.target_tau}")
        self.exploration_noise = check_positive_float("exploration_noise", self.exploration_noise, allow_zero=True)

    @classmethod
    def for_budget(cls, tier: Tier | None = None, **overrides) -> ActorCriticConfig:
        """The configuration of a compute tier (None: the process's, :func:`~mbrl_course.budget.budget`): the
        networks shrink on a CPU; keyword arguments override fields."""
        return cls(**{"hidden_sizes": _hidden_sizes(tier), **overrides})


@dataclass
class ImaginedLosses:
    """What :meth:`ImaginationActorCritic.losses` computes on one batch of imagined trajectories (time first)."""

    actor_loss: torch.Tensor
    """−mean_t,n w_t (V_λ(s_t) + η H_t): its graph reaches the actor φ only (scalar)"""
    value_loss: torch.Tensor
    """mean_t,n w_t ½ (v_ψ(sg(s_t)) − sg(V_λ(s_t)))²: its graph reaches the value ψ only (scalar)"""
    features: torch.Tensor
    """[h, s] of s_0 (the start) .. s_H: (H+1, N, F)"""
    actions: torch.Tensor
    """a_t ~ q_φ(· | s_t) for t = 0..H−1: (H, N, A)"""
    rewards: torch.Tensor
    """r_t = E[r | s_{t+1}], the reward predicted for the state a_t leads to: (H, N)"""
    values: torch.Tensor
    """v(s_t) for t = 0..H, from v_ψ̄ with a target network, else from v_ψ (the bootstrap values): (H+1, N)"""
    returns: torch.Tensor
    """V_λ(s_t) for t = 0..H−1: (H, N)"""
    weights: torch.Tensor
    """w_t = γ^t for t = 0..H−1: (H, N)"""


@contextmanager
def _frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Parameters that require no gradient inside the block: graphs built here reach only other leaves."""
    params = [p for m in modules if m is not None for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


def _flatten(state: LatentState) -> LatentState:
    """The same state with all leading dimensions flattened into one: (B, T, ·) -> (B·T, ·)."""
    return replace(state, **{f.name: getattr(state, f.name).reshape(-1, getattr(state, f.name).shape[-1])
                             for f in fields(state) if getattr(state, f.name) is not None})


class ImaginationActorCritic:
    """Dreamer's learner: actor q_φ(a_t | s_t) and value v_ψ(s_t) on the world model's features s_t = [h_t, s_t],
    trained purely on trajectories the model imagines from posterior states (the module docstring's equations).

    - actor: a tanh-squashed Gaussian a = c + s ⊙ tanh(m_φ + σ_φ ε) over the action box (c, s its centre and
      half-width), reparameterised (:class:`~mbrl_course.rl.networks.TanhGaussianPolicy`); its mode for evaluation
      is the squashed mean c + s ⊙ tanh(m_φ).
    - value: an ELU MLP v_ψ(s) (and, with ``target_network``, its slowly updated copy v_ψ̄ for the bootstrap values).

    Stop-gradients. The world model's optimiser is not ours: during the imagination its parameters (and the
    value's) are frozen (``requires_grad=False``, restored afterwards), so the actor loss's graph reaches the
    actor φ only, through the imagined states and actions (the model's dynamics are differentiable, its weights
    constants), and leaves no ``.grad`` on the model. The value loss reads detached states and detached returns,
    so it reaches ψ only.

    Args:
        feature_size: F = H + S, the size of the model's ``features``.
        action_low, action_high: the env's action box, (A,) each.
        config: :class:`ActorCriticConfig` (None: the process's tier, :meth:`ActorCriticConfig.for_budget`).
        device: where the networks live (the world model's device).
        seed: seeds the initial weights and the generator of the actions and of the imagined states' noise.
    """

    def __init__(self, feature_size: int, action_low, action_high, config: ActorCriticConfig | None = None, *,
                 device: torch.device | str = "cpu", seed: int | None = 0) -> None:
        self.config = cfg = config or ActorCriticConfig.for_budget()
        self.device = resolve_device(device)
        self.feature_size = check_positive_int("feature_size", feature_size)
        if seed is not None:
            torch.manual_seed(seed)
        self.actor = TanhGaussianPolicy(self.feature_size, action_low, action_high, cfg.hidden_sizes,
                                        device=self.device)
        self.box = self.actor.box
        self.act_dim = self.actor.act_dim
        self.value = mlp(self.feature_size, cfg.hidden_sizes, 1, activation=nn.ELU, device=self.device)
        self.value_target = copy.deepcopy(self.value).requires_grad_(False) if cfg.target_network else None
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, eps=cfg.adam_eps)
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), lr=cfg.value_lr, eps=cfg.adam_eps)
        self.generator = torch.Generator(device=self.device).manual_seed(0 if seed is None else seed)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        """True once a loss came out NaN/inf (that update's optimiser steps are then skipped)."""
        self.updates = 0

    # ------------------------------------------------------------------ checks
    def _check_features(self, name: str, features: torch.Tensor) -> None:
        if not isinstance(features, torch.Tensor) or features.ndim < 1 or features.shape[-1] != self.feature_size:
            got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"{name}: expected features (..., {self.feature_size}) ([h, s] of the world model the "
                             f"learner was built for), got {got}")

    def _check_model(self, model: RecurrentSSM) -> None:
        if model.feature_size != self.feature_size:
            raise ValueError(f"model: expected a world model with feature_size {self.feature_size}, "
                             f"got one with {model.feature_size}")
        if model.action_dim != self.act_dim:
            raise ValueError(f"model: expected a world model with action_dim {self.act_dim} (the action box's), "
                             f"got {model.action_dim}")
        if model.reward_net is None:
            raise ValueError("model: expected a world model with a reward head (reward_head=True), got none")
        device = next(model.parameters()).device
        if device.type != self.device.type or (self.device.index is not None and device.index != self.device.index):
            raise ValueError(f"model: expected a world model on the learner's device {self.device}, got one on {device}")

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, features: torch.Tensor, deterministic: bool = False, explore: bool = False) -> torch.Tensor:
        """a ~ q_φ(· | s) for features ``(..., F)`` -> ``(..., A)`` (tensors on the learner's device).

        ``deterministic``: the mode c + s ⊙ tanh(m_φ(s)) (evaluation). ``explore``: add Dreamer's exploration noise
        N(0, (σ_expl s)²) (σ_expl = ``config.exploration_noise``, s the box's half-width) and clip to the box,
        for collecting data (Dreamer v1 acts with a sample plus this noise).
        """
        self._check_features("features", features)
        action, _ = self.actor.sample(features, self.generator, deterministic)
        if explore and self.config.exploration_noise > 0:
            noise = torch.randn(action.shape, generator=self.generator, device=action.device, dtype=action.dtype)
            action = self.box.clip(action + self.config.exploration_noise * self.box.scale * noise)
        return action

    @torch.no_grad()
    def value_of(self, features: torch.Tensor) -> torch.Tensor:
        """v_ψ(s) for features ``(..., F)`` -> ``(...)`` (e.g. the value estimates along an imagined trajectory)."""
        self._check_features("features", features)
        return self.value(features).squeeze(-1)

    # ------------------------------------------------------------------ learning
    def losses(self, model: RecurrentSSM, start_state: LatentState) -> ImaginedLosses:
        """Imagine H steps from every posterior state and compute both losses (no optimiser step).

        Time indexing: s_0 = sg(start) (each of the N = B·T posterior states, flattened and detached); for
        t = 0..H−1, a_t ~ q_φ(· | s_t) and s_{t+1} ~ p(s_{t+1} | h_{t+1}) (``model.imagine``, which returns s_1..s_H and
        the reward E[r | s_k] predicted for each state reached); r_t := E[r | s_{t+1}], the reward of the step
        from s_t to s_{t+1} (the data's convention: ``rewards[:, t]`` arrives with ``frames[:, t]``); values
        v(s_0) .. v(s_H) (H+1 of them); c_t = γ. Then

            V_λ(s_t) = r_t + γ ((1 − λ) v(s_{t+1}) + λ V_λ(s_{t+1})),   V_λ(s_H) = v(s_H)    (:func:`lambda_returns`)
            actor:  −mean_{t,n} w_t (V_λ(s_t) + η H[q_φ(· | s_t)]),   w_t = γ^t              (:func:`actor_loss`)
            value:  mean_{t,n} w_t ½ (v_ψ(sg(s_t)) − sg(V_λ(s_t)))²                          (:func:`value_loss`)

        with H[q_φ] estimated by −log q_φ(a_t | s_t) of the sample (the tanh-Gaussian has no closed form).
        ``start_state``: posterior states with any leading shape, e.g. (B, T, ·) from ``model.observe``.
        """
        self._check_model(model)
        size = start_state.h.shape[-1] + start_state.s.shape[-1]
        if size != self.feature_size:
            raise ValueError(f"start_state: expected states whose features [h, s] have size {self.feature_size}, "
                             f"got h of size {start_state.h.shape[-1]} and s of size {start_state.s.shape[-1]}")
        cfg = self.config
        start = _flatten(start_state.detach())
        log_probs: list[torch.Tensor] = []

        def policy(features: torch.Tensor) -> torch.Tensor:
            action, log_prob = self.actor.sample(features, self.generator)  # reparameterised: gradients reach φ
            log_probs.append(log_prob)
            return action

        bootstrap = self.value_target if self.value_target is not None else self.value
        with _frozen(model, self.value, self.value_target):  # the actor loss reaches φ only
            imagined = model.imagine(start, policy=policy, horizon=cfg.horizon, generator=self.generator)
            features = torch.cat([start.features.unsqueeze(0), imagined.states.features.transpose(0, 1)])  # (H+1, N, F)
            rewards = imagined.rewards.transpose(0, 1)  # r_t = E[r | s_{t+1}]: (H, N)
            values = bootstrap(features).squeeze(-1)  # v(s_0) .. v(s_H): (H+1, N)
        continuation = torch.full_like(rewards, cfg.gamma)  # c_t = γ (no termination head)
        returns = lambda_returns(rewards, values, continuation, cfg.lam)  # V_λ(s_0) .. V_λ(s_{H−1})
        weights = discount_weights(continuation)[:-1]  # w_t = Π_{i<t} c_i, t = 0..H−1
        entropy = -torch.stack(log_probs)  # H[q_φ(· | s_t)] ≈ −log q_φ(a_t | s_t): (H, N)
        # actor: −mean w_t (V_λ(s_t) + η H_t), backpropagated through the imagination into φ
        loss_actor = actor_loss(returns, weights, entropy, cfg.entropy_scale)
        # value: mean w_t ½ (v_ψ(sg(s_t)) − sg(V_λ(s_t)))², t = 0..H−1
        loss_value = value_loss(self.value(features[:-1].detach()).squeeze(-1), returns, weights)
        return ImaginedLosses(loss_actor, loss_value, features.detach(), imagined.actions.transpose(0, 1).detach(),
                              rewards.detach(), values.detach(), returns.detach(), weights)

    def update(self, model: RecurrentSSM, start_state: LatentState) -> dict[str, float]:
        """One Adam step of the actor and one of the value on trajectories imagined from ``start_state``
        (:meth:`losses`), then the target copy's update every ``target_update_period`` updates.

        The world model is left untouched (its parameters frozen during the imagination: no update, no ``.grad``).
        Returns ``actor_loss``, ``value_loss``, ``imagined_return`` (mean V_λ(s_0) over the starts),
        ``imagined_reward`` (mean r_t), ``value`` (mean v(s_t)), ``actor_grad_norm``, ``value_grad_norm`` as floats
        (one host sync). A non-finite loss sets ``nonfinite`` and skips both optimiser steps.
        """
        cfg = self.config
        out = self.losses(model, start_state)
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.value_optimizer.zero_grad(set_to_none=True)
        (out.actor_loss + out.value_loss).backward()  # the two graphs share no parameters
        clip = math.inf if cfg.grad_clip is None else cfg.grad_clip
        actor_norm = nn.utils.clip_grad_norm_(self.actor.parameters(), clip)
        value_norm = nn.utils.clip_grad_norm_(self.value.parameters(), clip)
        stats = torch.stack([out.actor_loss.detach(), out.value_loss.detach(), out.returns[0].mean(),
                             out.rewards.mean(), out.values.mean(), actor_norm, value_norm]).tolist()
        finite = math.isfinite(stats[0]) and math.isfinite(stats[1])
        if finite:
            self.actor_optimizer.step()
            self.value_optimizer.step()
        else:
            self.nonfinite.fill_(True)
        self.updates += 1
        if self.value_target is not None and self.updates % cfg.target_update_period == 0:
            with torch.no_grad():  # ψ̄ := (1 − τ) ψ̄ + τ ψ
                torch._foreach_lerp_(list(self.value_target.parameters()), list(self.value.parameters()),
                                     cfg.target_tau)
        names = ("actor_loss", "value_loss", "imagined_return", "imagined_reward", "value", "actor_grad_norm",
                 "value_grad_norm")
        return dict(zip(names, stats))

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Actor, value (and target), both optimisers' states, the generator and the update count."""
        return {
            "actor": self.actor.state_dict(), "value": self.value.state_dict(),
            "value_target": None if self.value_target is None else self.value_target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "generator": self.generator.get_state(), "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (of a learner with the same sizes and ``target_network`` setting)."""
        if (state["value_target"] is None) != (self.value_target is None):
            raise ValueError(f"state: expected a checkpoint with target_network={self.value_target is not None}, "
                             f"got one with target_network={state['value_target'] is not None}")
        self.actor.load_state_dict(state["actor"])
        self.value.load_state_dict(state["value"])
        if self.value_target is not None:
            self.value_target.load_state_dict(state["value_target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.generator.set_state(state["generator"].cpu())
        self.updates = int(state["updates"])
        self.nonfinite.zero_()
