"""What the on-policy learners (REINFORCE, PPO) share: trajectories, advantages, the value baseline.

A batch of on-policy data is a :class:`Trajectories`: T steps of N parallel trajectories, real
(N = 1, collected episode after episode) or imagined (N rollouts in the world model f_ψ). Steps after
an imagined trajectory terminated are padding (``valid`` is False there) and never enter a loss.

Advantages by generalised advantage estimation (Schulman et al., 2016):

    δ_t = g_t + γ (1 − d_t) V_φ(i'_t) − V_φ(i_t)
    Â_t = δ_t + γ λ (1 − e_t) Â_{t+1},      Â_T = 0
    R_t = Â_t + V_φ(i_t)                     (the value target)

with d_t = "i'_t is terminal" and e_t = "the trajectory ends after step t" (terminated or
truncated). λ = 1 gives the Monte Carlo return minus the baseline, R_t = Σ_k γ^k g_{t+k} (bootstrapped
with V_φ where a trajectory was cut short): REINFORCE with a baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import nn

from mbrl_course._checks import check_shape
from mbrl_course.rl.networks import PolicySample

__all__ = ["Trajectories", "generalized_advantages"]


@dataclass
class Trajectories:
    """T steps of N trajectories of an on-policy learner (the slide's D_sim when imagined)."""

    obs: torch.Tensor
    """i_t: (T, N, O)"""
    raw_action: torch.Tensor
    """the policy's sample ũ_t that log_prob refers to: (T, N, A)"""
    log_prob: torch.Tensor
    """log π_old(ũ_t | i_t) under the policy that collected the data: (T, N)"""
    reward: torch.Tensor
    """g_t: (T, N)"""
    next_obs: torch.Tensor
    """i'_t: (T, N, O)"""
    terminated: torch.Tensor
    """d_t, True where i'_t is terminal: (T, N) bool"""
    ended: torch.Tensor
    """e_t, True where the trajectory stops after step t (terminated or truncated): (T, N) bool"""
    valid: torch.Tensor
    """False on padding after a trajectory ended early: (T, N) bool"""

    def __post_init__(self) -> None:
        T, N = self.reward.shape[:2] if self.reward.dim() == 2 else (None, None)
        if T is None:
            raise ValueError(f"reward: expected shape (T, N), got {tuple(self.reward.shape)}")
        check_shape("obs", self.obs, (T, N, "O"))
        check_shape("raw_action", self.raw_action, (T, N, "A"))
        check_shape("next_obs", self.next_obs, (T, N, self.obs.shape[-1]))
        for name in ("log_prob", "terminated", "ended", "valid"):
            check_shape(name, getattr(self, name), (T, N))
        for name in ("terminated", "ended", "valid"):
            if getattr(self, name).dtype != torch.bool:
                raise TypeError(f"{name}: expected a bool tensor, got dtype {getattr(self, name).dtype}")

    @property
    def num_steps(self) -> int:
        """How many valid steps the batch holds (a host sync)."""
        return int(self.valid.sum())

    def to(self, device: torch.device | str) -> Trajectories:
        """The same trajectories on ``device``."""
        return Trajectories(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @staticmethod
    def cat(parts: list[Trajectories]) -> Trajectories:
        """Concatenate along T (parts with the same N), e.g. episodes collected one after another."""
        if not parts:
            raise ValueError("parts: expected at least one Trajectories, got none")
        return Trajectories(**{f.name: torch.cat([getattr(p, f.name) for p in parts], 0) for f in fields(Trajectories)})


@torch.no_grad()
def generalized_advantages(value_fn: nn.Module, traj: Trajectories, *, gamma: float, lam: float,
                           reward_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(Â, R), each (T, N): GAE(γ, λ) advantages and value targets (see the module docstring).

    ``value_fn`` maps (…, O) to (…, 1). Rewards are multiplied by ``reward_scale`` first (value targets
    of a comfortable size). Padding steps get Â = R = 0.
    """
    value = value_fn(traj.obs).squeeze(-1)
    next_value = value_fn(traj.next_obs).squeeze(-1)
    reward = traj.reward * reward_scale
    not_terminal = (~traj.terminated).to(reward.dtype)
    carry_on = (~traj.ended).to(reward.dtype)
    delta = reward + gamma * not_terminal * next_value - value  # δ_t
    advantages = torch.zeros_like(reward)
    running = torch.zeros_like(reward[0])
    for t in range(reward.shape[0] - 1, -1, -1):  # Â_t = δ_t + γ λ (1 − e_t) Â_{t+1}
        running = delta[t] + gamma * lam * carry_on[t] * running
        advantages[t] = running
    valid = traj.valid.to(reward.dtype)
    return advantages * valid, (advantages + value) * valid


class GaussianPolicyActor:
    """Acting with a Gaussian policy π_θ, shared by the on-policy learners (REINFORCE, PPO).

    Expects ``self.policy`` (a :class:`~mbrl_course.rl.networks.GaussianPolicy`), ``self.generator``
    and ``self.device``.
    """

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """u for one real state ``obs (O,)``: ``(A,)`` (the clipped mean when ``deterministic``)."""
        state = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=self.device)
        return self.policy.policy_sample(state, self.generator, deterministic).action.cpu().numpy()

    def policy_sample(self, obs: torch.Tensor, deterministic: bool = False) -> PolicySample:
        """ũ ~ π_θ(· | i) for ``obs (M, O)``: env action, ũ and log π_θ(ũ | i)."""
        return self.policy.policy_sample(obs, self.generator, deterministic)

    def reset(self) -> None:
        """Start of an episode (no per-episode state)."""
