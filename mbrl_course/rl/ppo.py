"""Proximal Policy Optimisation with the clipped surrogate (Schulman et al., 2017): MBMF's fine-tuner.

From a batch of on-policy :class:`~mbrl_course.rl.onpolicy.Trajectories` collected by π_old (real
episodes or imagined rollouts), with GAE(γ, λ) advantages Â_t and value targets R_t, one
:meth:`PPO.update` runs ``epochs`` passes of minibatch Adam steps on

    ρ_t(θ) = π_θ(ũ_t | i_t) / π_old(ũ_t | i_t)
    L(θ, φ) = −mean_t min(ρ_t Â_t, clip(ρ_t, 1 − ε, 1 + ε) Â_t)
              + c_V mean_t (V_φ(i_t) − R_t)²  −  c_H H[π_θ]

with the gradient norm clipped, stopping early once the batch's approximate KL(π_old ‖ π_θ)
exceeds ``target_kl`` (when set).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mbrl_course._checks import check_positive_float, check_positive_int, resolve_device
from mbrl_course.rl.networks import GaussianPolicy, mlp
from mbrl_course.rl.onpolicy import GaussianPolicyActor, Trajectories, generalized_advantages

__all__ = ["PPO", "PPOConfig"]


@dataclass
class PPOConfig:
    """Hyperparameters of PPO (defaults: the paper's MuJoCo settings / CleanRL)."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden widths of the policy's mean network and of V_φ."""
    gamma: float = 0.99
    """γ, the discount factor."""
    gae_lambda: float = 0.95
    """λ of the advantage estimator."""
    lr: float = 3e-4
    """Adam learning rate of θ and φ."""
    epochs: int = 10
    """Passes over each batch."""
    minibatch_size: int = 64
    """Steps per minibatch."""
    clip: float = 0.2
    """ε, the clipping range of the probability ratio."""
    value_coef: float = 0.5
    """c_V, the weight of the value loss."""
    entropy_coef: float = 0.0
    """c_H, the weight of the entropy bonus."""
    max_grad_norm: float = 0.5
    """Gradient norm clipping."""
    target_kl: float | None = None
    """Stop the epochs early once the approximate KL exceeds this (None: never)."""
    init_log_std: float = 0.0
    """log σ of the policy at the start (normalised action units)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before computing advantages and value targets."""
    normalize_advantages: bool = True
    """Standardise Â per minibatch."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(check_positive_int("hidden_sizes", h) for h in self.hidden_sizes)
        for name in ("gamma", "gae_lambda"):
            value = check_positive_float(name, getattr(self, name), allow_zero=True)
            if value > 1:
                raise ValueError(f"{name}: expected a number in [0, 1], got {value}")
            setattr(self, name, value)
        for name in ("lr", "clip", "max_grad_norm", "reward_scale"):
            setattr(self, name, check_positive_float(name, getattr(self, name)))
        for name in ("value_coef", "entropy_coef"):
            setattr(self, name, check_positive_float(name, getattr(self, name), allow_zero=True))
        self.epochs = check_positive_int("epochs", self.epochs)
        self.minibatch_size = check_positive_int("minibatch_size", self.minibatch_size)
        if self.target_kl is not None:
            self.target_kl = check_positive_float("target_kl", self.target_kl)


class PPO(GaussianPolicyActor):
    """PPO-clip with a Gaussian policy and a value network: ``act``, ``policy_sample``, ``update(trajectories)``.

    Args:
        obs_dim: O. action_low, action_high: the env's action box.
        config: :class:`PPOConfig`.
        device: where the networks live. seed: initial weights, action noise and minibatch shuffles.
        policy: start from this :class:`GaussianPolicy` (e.g. a behaviour-cloned one) instead of a fresh one.
    """

    on_policy = True
    """``update`` learns from fresh trajectories of the current policy (on-policy)."""

    def __init__(self, obs_dim: int, action_low, action_high, config: PPOConfig | None = None, *,
                 device: torch.device | str = "cpu", seed: int | None = 0, policy: GaussianPolicy | None = None):
        self.config = config = config or PPOConfig()
        self.device = resolve_device(device)
        if seed is not None:
            torch.manual_seed(seed)
        self.policy = policy if policy is not None else GaussianPolicy(
            obs_dim, action_low, action_high, config.hidden_sizes, init_log_std=config.init_log_std,
            device=self.device)
        self.obs_dim, self.act_dim = self.policy.obs_dim, self.policy.act_dim
        self.value = mlp(obs_dim, config.hidden_sizes, 1, activation=torch.nn.Tanh, device=self.device)
        self.optimizer = torch.optim.Adam([*self.policy.parameters(), *self.value.parameters()], lr=config.lr, eps=1e-5)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0 if seed is None else seed)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self.updates = 0

    def fit_value(self, traj: Trajectories, epochs: int = 20) -> torch.Tensor:
        """Regress V_φ alone on the GAE targets of ``traj`` (a critic warm-up before fine-tuning a given policy).

        Returns the last minibatch's value loss. Targets are recomputed every epoch (they bootstrap on V_φ).
        """
        epochs = check_positive_int("epochs", epochs)
        optimizer = torch.optim.Adam(self.value.parameters(), lr=self.config.lr * 3)
        loss = torch.zeros((), device=self.device)
        for _ in range(epochs):
            _, returns = generalized_advantages(self.value, traj, gamma=self.config.gamma,
                                                lam=self.config.gae_lambda, reward_scale=self.config.reward_scale)
            obs, target = traj.obs[traj.valid], returns[traj.valid]
            order = torch.randperm(obs.shape[0], generator=self.generator, device=self.generator.device)
            for start in range(0, obs.shape[0], self.config.minibatch_size):
                idx = order[start:start + self.config.minibatch_size].to(self.device)
                loss = (self.value(obs[idx]).squeeze(-1) - target[idx]).square().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return loss.detach()

    def update(self, traj: Trajectories) -> dict[str, torch.Tensor]:
        """``epochs`` passes of clipped-surrogate minibatch steps on ``traj`` (see the module docstring)."""
        cfg = self.config
        advantages, returns = generalized_advantages(self.value, traj, gamma=cfg.gamma, lam=cfg.gae_lambda,
                                                     reward_scale=cfg.reward_scale)
        mask = traj.valid
        obs, raw_action, old_log_prob = traj.obs[mask], traj.raw_action[mask], traj.log_prob[mask]
        advantages, returns = advantages[mask], returns[mask]
        n = obs.shape[0]
        stats: dict[str, torch.Tensor] = {}
        clipped = torch.zeros((), device=self.device)
        steps = 0
        for _ in range(cfg.epochs):
            order = torch.randperm(n, generator=self.generator, device=self.generator.device).to(self.device)
            approx_kl = torch.zeros((), device=self.device)
            for start in range(0, n, cfg.minibatch_size):
                idx = order[start:start + cfg.minibatch_size]
                adv = advantages[idx]
                if cfg.normalize_advantages and idx.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                log_ratio = self.policy.log_prob(obs[idx], raw_action[idx]) - old_log_prob[idx]
                ratio = log_ratio.exp()  # ρ_t(θ)
                policy_loss = -torch.minimum(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv).mean()
                value_loss = (self.value(obs[idx]).squeeze(-1) - returns[idx]).square().mean()
                entropy = self.policy.entropy()
                loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_([*self.policy.parameters(), *self.value.parameters()],
                                               cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean()  # k3 estimator of KL(π_old ‖ π_θ)
                    clipped = clipped + ((ratio - 1).abs() > cfg.clip).float().mean()
                self.nonfinite |= ~torch.isfinite(loss.detach())
                steps += 1
            if cfg.target_kl is not None and float(approx_kl) > cfg.target_kl:  # one sync per epoch
                break
        self.updates += 1
        stats.update(policy_loss=policy_loss.detach(), value_loss=value_loss.detach(), entropy=entropy.detach(),
                     approx_kl=approx_kl, clip_fraction=clipped / max(steps, 1))
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Policy, value network, optimiser, generator."""
        return {"policy": self.policy.state_dict(), "value": self.value.state_dict(),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])
        self.nonfinite.zero_()
