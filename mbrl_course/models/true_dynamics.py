"""The env's own equations as a model of the contract: f_ψ := f, the oracle with no model error.

The lectures and benchmarks plan with it to separate what the planner can do from what the learned
model costs (e.g. "CEM on the true dynamics" beside PETS). It fits nothing, predicts a point mass and
propagates every row by i' = f(i, u) (:func:`~mbrl_course.envs.dynamics_fn`); the reward comes from the
env's reward function, as for any model that does not learn it.
"""

from __future__ import annotations

import torch

from mbrl_course._checks import as_tensor, check_shape, resolve_device
from mbrl_course.models.base import PointMass, Propagator
from mbrl_course.models.training import FitReport

__all__ = ["TrueDynamics"]


class TrueDynamics:
    """i' = f(i, u), the env's analytic step, batched on any device.

    Args:
        env_id: an env with analytic dynamics (``Pendulum-v1``, ``MountainCarContinuous-v0``,
            ``mbrl_course/CartPoleSwingUp-v0``).
        device, dtype: where and in which dtype imagined states live.
        **env_kwargs: as given to ``make_env`` (e.g. ``g`` of Pendulum-v1).
    """

    predict_reward = False

    def __init__(self, env_id: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 **env_kwargs):
        from mbrl_course.envs import dynamics_fn, make_env

        self.env_id = env_id
        self.dynamics = dynamics_fn(env_id, **env_kwargs)
        env = make_env(env_id, **env_kwargs)
        self.obs_dim = int(env.observation_space.shape[0])
        self.act_dim = int(env.action_space.shape[0])
        env.close()
        self._device = resolve_device(device)
        self._dtype = dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def fit(self, data=None, *, generator: torch.Generator | None = None, progress: bool = False,
            **_ignored) -> FitReport:
        """Nothing to learn: f is known. Returns an empty :class:`FitReport`."""
        return FitReport(train_loss=[], val_mse=[], epochs_run=0, elites=None)

    def next_state_distribution(self, obs: torch.Tensor, action: torch.Tensor) -> PointMass:
        """δ(i' − f(i, u)) for ``obs (B, O)``, ``action (B, A)``."""
        obs = as_tensor("obs", obs, dtype=self.dtype, device=self.device)
        action = as_tensor("action", action, dtype=self.dtype, device=self.device)
        check_shape("obs", obs, ("B", self.obs_dim))
        check_shape("action", action, (obs.shape[0], self.act_dim))
        return PointMass(self.dynamics(obs, action))

    def propagator(self, *, generator: torch.Generator | None = None, **_ignored) -> Propagator:
        """Every row steps by i' = f(i, u); propagation options are accepted and ignored."""
        return _TruePropagator(self.dynamics)

    def state_dict(self) -> dict:
        """Nothing is learned: an empty state."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore."""

    def __repr__(self) -> str:
        return f"TrueDynamics({self.env_id!r}, obs_dim={self.obs_dim}, act_dim={self.act_dim})"


class _TruePropagator(Propagator):
    def __init__(self, dynamics):
        self.dynamics = dynamics

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.dynamics(obs, action), None
