"""REINFORCE with a learned baseline (Williams, 1992): Deep PILCO's policy-iteration-algo.

The likelihood-ratio policy gradient with a state-value baseline b(i) = V_φ(i):

    ∇_θ J(θ) ≈ 1/|D| Σ_{(t,n) ∈ D} ∇_θ log π_θ(ũ_tn | i_tn) (G_tn − V_φ(i_tn)),
    G_t = Σ_{k≥0} γ^k g_{t+k}                        (Monte Carlo return to the end of the trajectory),
    L(φ) = 1/|D| Σ (V_φ(i_tn) − G_tn)²               (the baseline regresses on the returns).

The baseline changes the estimator's variance, never its expectation. One :meth:`REINFORCE.update`
takes one gradient step on each from a batch of on-policy :class:`~mbrl_course.rl.onpolicy.Trajectories`
— real episodes or imagined rollouts alike. G_t is computed as GAE with λ = 1, which bootstraps
with V_φ only where a trajectory was cut short without terminating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mbrl_course._checks import check_positive_float, check_positive_int, resolve_device
from mbrl_course.rl.networks import GaussianPolicy, mlp
from mbrl_course.rl.onpolicy import GaussianPolicyActor, Trajectories, generalized_advantages

__all__ = ["REINFORCE", "REINFORCEConfig"]


@dataclass
class REINFORCEConfig:
    """Hyperparameters of REINFORCE with a baseline."""

    hidden_sizes: tuple[int, ...] = (64, 64)
    """Hidden widths of the policy's mean network and of the baseline V_φ."""
    gamma: float = 0.99
    """γ, the discount factor."""
    policy_lr: float = 1e-3
    """Adam learning rate of the policy θ."""
    value_lr: float = 1e-3
    """Adam learning rate of the baseline φ."""
    value_steps: int = 5
    """Gradient steps on the baseline per update."""
    init_log_std: float = -0.5
    """log σ of the policy at the start (normalised action units)."""
    normalize_advantages: bool = True
    """Standardise G − V over the batch (a per-batch step size; False: the plain estimator)."""
    use_baseline: bool = True
    """Subtract V_φ(i) (False: plain REINFORCE, b = 0)."""
    reward_scale: float = 1.0
    """Rewards are multiplied by this before computing returns."""

    def __post_init__(self) -> None:
        self.hidden_sizes = tuple(check_positive_int("hidden_sizes", h) for h in self.hidden_sizes)
        self.gamma = check_positive_float("gamma", self.gamma, allow_zero=True)
        if self.gamma > 1:
            raise ValueError(f"gamma: expected a number in [0, 1], got {self.gamma}")
        self.policy_lr = check_positive_float("policy_lr", self.policy_lr)
        self.value_lr = check_positive_float("value_lr", self.value_lr)
        self.value_steps = check_positive_int("value_steps", self.value_steps)
        self.reward_scale = check_positive_float("reward_scale", self.reward_scale)


class REINFORCE(GaussianPolicyActor):
    """REINFORCE with a value baseline: ``act``, ``policy_sample`` and ``update(trajectories)``.

    Args:
        obs_dim: O. action_low, action_high: the env's action box.
        config: :class:`REINFORCEConfig`.
        device: where the networks live. seed: initial weights and the action-noise generator.
    """

    on_policy = True
    """``update`` learns from fresh trajectories of the current policy (on-policy)."""

    def __init__(self, obs_dim: int, action_low, action_high, config: REINFORCEConfig | None = None, *,
                 device: torch.device | str = "cpu", seed: int | None = 0):
        self.config = config = config or REINFORCEConfig()
        self.device = resolve_device(device)
        if seed is not None:
            torch.manual_seed(seed)
        self.policy = GaussianPolicy(obs_dim, action_low, action_high, config.hidden_sizes,
                                     init_log_std=config.init_log_std, device=self.device)
        self.obs_dim, self.act_dim = self.policy.obs_dim, self.policy.act_dim
        self.value = mlp(obs_dim, config.hidden_sizes, 1, activation=torch.nn.Tanh, device=self.device)
        self.policy_optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.policy_lr)
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), lr=config.value_lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(0 if seed is None else seed)
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        self.updates = 0

    def update(self, traj: Trajectories) -> dict[str, torch.Tensor]:
        """One policy-gradient step and ``value_steps`` baseline steps on ``traj`` (see the module docstring)."""
        cfg = self.config
        advantages, returns = generalized_advantages(self.value, traj, gamma=cfg.gamma, lam=1.0,
                                                     reward_scale=cfg.reward_scale)
        mask = traj.valid
        if not cfg.use_baseline:  # G_t itself (the baseline's estimate added back)
            advantages = returns
        adv = advantages[mask]
        if cfg.normalize_advantages and adv.numel() > 1:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        # L(θ) = −1/|D| Σ log π_θ(ũ | i) Â   (its gradient is the REINFORCE estimator)
        log_prob = self.policy.log_prob(traj.obs[mask], traj.raw_action[mask])
        policy_loss = -(log_prob * adv).mean()
        self.policy_optimizer.zero_grad(set_to_none=True)
        policy_loss.backward()
        self.policy_optimizer.step()
        # L(φ) = 1/|D| Σ (V_φ(i) − G)²
        obs, target = traj.obs[mask], returns[mask]
        for _ in range(cfg.value_steps):
            value_loss = (self.value(obs).squeeze(-1) - target).square().mean()
            self.value_optimizer.zero_grad(set_to_none=True)
            value_loss.backward()
            self.value_optimizer.step()
        self.nonfinite |= ~torch.isfinite(policy_loss.detach() + value_loss.detach())
        self.updates += 1
        return {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
                "entropy": self.policy.entropy().detach()}

    def state_dict(self) -> dict[str, Any]:
        """Policy, baseline, both optimisers, the generator."""
        return {"policy": self.policy.state_dict(), "value": self.value.state_dict(),
                "policy_optimizer": self.policy_optimizer.state_dict(),
                "value_optimizer": self.value_optimizer.state_dict(),
                "generator": self.generator.get_state(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.policy.load_state_dict(state["policy"])
        self.value.load_state_dict(state["value"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.generator.set_state(state["generator"])
        self.updates = int(state["updates"])
        self.nonfinite.zero_()
