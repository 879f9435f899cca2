"""Soft Actor-Critic (Haarnoja et al., 2018): MBPO's policy-iteration-algo.

SAC learns a tanh-squashed Gaussian policy μ_θ(u | i), twin critics Q_φ1, Q_φ2 with slowly moving
target copies Q_φ̄1, Q_φ̄2, and the entropy temperature α, from minibatches of transitions
(i, u, g_i, i', d) — real ones, imagined ones, or a mix (the Dyna loop decides). One :meth:`SAC.update`:

    critics:  y = g_i + γ (1 − d) [ min_k Q_φ̄k(i', u') − α log μ_θ(u' | i') ],   u' ~ μ_θ(· | i')
              L(φ) = Σ_k mean_n (Q_φk(i_n, u_n) − y_n)²
    actor:    L(θ) = mean_n [ α log μ_θ(ũ_n | i_n) − min_k Q_φk(i_n, ũ_n) ],   ũ_n = u_θ(i_n, ε_n)  (reparameterised)
    α:        L(α) = −mean_n log α · (log μ_θ(ũ_n | i_n) + H̄),   H̄ = target entropy (default −A)
    targets:  φ̄ := (1 − τ) φ̄ + τ φ

Speed. The update is the inner loop of MBPO (20 updates per env step), so it is written for it:
both critics run as one batched network (:class:`~mbrl_course.rl.networks.EnsembleQ`, one
``baddbmm`` per layer); the three losses share one backward pass and one Adam step (the actor's
loss sees the critics' weights as constants, so its gradient never reaches φ); the target update is
one fused ``lerp`` over all tensors; nothing in it waits for the device (no ``.item()``): the losses
come back as tensors, and a non-finite loss raises a flag the loops read once per env step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mbrl_course._checks import check_positive_float, check_positive_int, resolve_device
from mbrl_course.data import Batch
from mbrl_course.rl.networks import EnsembleQ, PolicySample, TanhGaussianPolicy

__all__ = ["SAC", "SACConfig"]


@dataclass
class SACConfig:
    """Hyperparameters of SAC (defaults: Haarnoja et al., 2018 / MBPO)."""

    hidden_sizes: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor and of each critic."""
    gamma: float = 0.99
    """γ, the discount factor."""
    tau: float = 0.005
    """τ, the rate at which the target critics follow the critics."""
    lr: float = 3e-4
    """Adam learning rate of the actor, the critics and log α (of each whose own rate below is None)."""
    actor_lr: float | None = None
    """Adam learning rate of the actor θ (None: lr)."""
    critic_lr: float | None = None
    """Adam learning rate of the critics φ (None: lr)."""
    alpha_lr: float | None = None
    """Adam learning rate of log α (None: lr)."""
    init_alpha: float = 1.0
    """α at the start."""
    autotune_alpha: bool = True
    """Tune α towards the target entropy (False: α stays at init_alpha)."""
    target_entropy: float = -1.0
    """H̄ per action dimension: α is tuned towards an entropy of target_entropy · A (SAC's −1: H̄ = −A)."""
    num_critics: int = 2
    """K critics; the target takes the minimum over them (2: clipped double Q)."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(check_positive_int("hidden_sizes", h) for h in self.hidden_sizes)
        self.gamma = check_positive_float("gamma", self.gamma, allow_zero=True)
        if self.gamma > 1:
            raise ValueError(f"gamma: expected a number in [0, 1], got {self.gamma}")
        self.tau = check_positive_float("tau", self.tau)
        if self.tau > 1:
            raise ValueError(f"tau: expected a number in (0, 1], got {self.tau}")
        for name in ("lr", "init_alpha"):
            setattr(self, name, check_positive_float(name, getattr(self, name)))
        for name in ("actor_lr", "critic_lr", "alpha_lr"):
            if getattr(self, name) is not None:
                setattr(self, name, check_positive_float(name, getattr(self, name)))
        self.num_critics = check_positive_int("num_critics", self.num_critics)


class SAC:
    """Soft Actor-Critic: ``act`` in the real env, ``policy_sample`` for imagination, ``update(batch)``.

    Args:
        obs_dim: O.
        action_low, action_high: the env's action box, (A,) each (finite: a bounded ``Box``).
        config: hyperparameters (:class:`SACConfig`).
        device: where the networks live.
        seed: seeds the initial weights and the generator for action noise.
    """

    on_policy = False
    """``update`` learns from transitions (off-policy)."""

    def __init__(self, obs_dim: int, action_low, action_high, config: SACConfig | None = None, *,
                 device: torch.device | str = "cpu", seed: int | None = 0):
        self.config = config = config or SACConfig()
        self.device = resolve_device(device)
        if seed is not None:
            torch.manual_seed(seed)
        self.actor = TanhGaussianPolicy(obs_dim, action_low, action_high, config.hidden_sizes, device=self.device)
        self.obs_dim, self.act_dim = self.actor.obs_dim, self.actor.act_dim
        self.critic = EnsembleQ(obs_dim, self.act_dim, config.hidden_sizes, num_critics=config.num_critics,
                                device=self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(float(np.log(config.init_alpha)), device=self.device,
                                      requires_grad=config.autotune_alpha)
        self.target_entropy = float(config.target_entropy * self.act_dim)
        params_by_lr: dict[float, list[torch.Tensor]] = {}
        params_by_lr.setdefault(config.actor_lr or config.lr, []).extend(self.actor.parameters())
        params_by_lr.setdefault(config.critic_lr or config.lr, []).extend(self.critic.parameters())
        if config.autotune_alpha:
            params_by_lr.setdefault(config.alpha_lr or config.lr, []).append(self.log_alpha)
        # one Adam over θ, φ and log α (one parameter group per learning rate): the three losses
        # share one backward pass and one optimiser step
        groups = [{"params": p, "lr": lr} for lr, p in params_by_lr.items()]
        try:  # the fused kernel: one call per step for all tensors (torch >= 2.4 on CPU)
            self.optimizer = torch.optim.Adam(groups, fused=True)
        except (RuntimeError, TypeError):
            self.optimizer = torch.optim.Adam(groups, foreach=True)
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0 if seed is None else seed)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        """True once a loss came out NaN/inf (read by the loops once per env step)."""
        self.updates = 0

    # ------------------------------------------------------------------ acting
    @property
    def alpha(self) -> torch.Tensor:
        """α = exp(log α) (a detached scalar tensor)."""
        return self.log_alpha.detach().exp()

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """u ~ μ_θ(· | i) for one real state ``obs (O,)`` (the squashed mean when ``deterministic``): ``(A,)``."""
        state = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)
        action, _ = self.actor.sample(state, self.generator, deterministic)
        return action.cpu().numpy()

    def policy_sample(self, obs: torch.Tensor, deterministic: bool = False) -> PolicySample:
        """u ~ μ_θ(· | i) for a batch ``obs (M, O)`` (imagined states), with log μ_θ(u | i)."""
        return self.actor.policy_sample(obs, self.generator, deterministic)

    def reset(self) -> None:
        """Start of an episode (SAC keeps no per-episode state)."""

    # ------------------------------------------------------------------ learning
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step on critics, actor and α from a minibatch (i, u, g_i, i', d), all ``(B, ·)``.

        Returns the losses and α as detached scalar tensors (no host sync).
        """
        cfg = self.config
        obs, action, reward, next_obs = batch.obs, batch.action, batch.reward, batch.next_obs
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            # y = g + γ (1 − d) [min_k Q_φ̄k(i', u') − α log μ_θ(u' | i')],  u' ~ μ_θ(· | i')
            next_action, next_log_prob = self.actor.sample(next_obs, self.generator)
            next_q = self.critic_target(next_obs, next_action).amin(0)
            not_done = (~batch.terminated).to(reward.dtype)
            target = reward + cfg.gamma * not_done * (next_q - alpha * next_log_prob)
        # L(φ) = Σ_k mean_n (Q_φk(i_n, u_n) − y_n)²
        critic_loss = (self.critic(obs, action) - target).square().mean(1).sum()
        # L(θ) = mean_n [α log μ_θ(ũ_n | i_n) − min_k Q_φk(i_n, ũ_n)], φ held constant
        new_action, log_prob = self.actor.sample(obs, self.generator)
        actor_loss = (alpha * log_prob - self.critic(obs, new_action, detach_params=True).amin(0)).mean()
        loss = critic_loss + actor_loss
        if self.config.autotune_alpha:
            # L(α) = −log α · mean_n (log μ_θ(ũ_n | i_n) + H̄)
            alpha_loss = -self.log_alpha * (log_prob.detach().mean() + self.target_entropy)
            loss = loss + alpha_loss
        else:
            alpha_loss = torch.zeros((), device=self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        # φ̄ := (1 − τ) φ̄ + τ φ
        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, cfg.tau)
        self.nonfinite |= ~torch.isfinite(loss.detach())
        self.updates += 1
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(),
                "alpha_loss": alpha_loss.detach(), "alpha": alpha}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Actor, critics, target critics, log α, the optimiser's state, the generator and the update count."""
        return {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(), "log_alpha": self.log_alpha.detach().clone(),
            "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])
        self.nonfinite.zero_()

