"""Small models of the contract with known dynamics, shared by the tests of imagination and learners."""

from __future__ import annotations

import torch

from mbrl_course.models import Propagator


class _AddAction(Propagator):
    def step(self, obs, action):
        return obs + action, None


class IntegratorModel:
    """A known deterministic world model of the contract, i' = i + u (no learned reward)."""

    predict_reward = False
    device = torch.device("cpu")

    def __init__(self, obs_dim: int = 2, act_dim: int = 1, dtype: torch.dtype = torch.float64):
        self.obs_dim, self.act_dim, self.dtype = obs_dim, act_dim, dtype

    def propagator(self, **options) -> Propagator:
        return _AddAction()
