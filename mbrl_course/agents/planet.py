"""PlaNet: Deep Planning Network (Hafner et al., 2019), the lecture's MPC loop in a latent space learned from pixels.

The lecture's [MPC] recipe, for a POMDP observed through 64×64×3 frames y_t:

    f_ψ            := the RSSM, h_t = f_θ(h_{t-1}, s_{t-1}, a_{t-1}), s_t ~ p(s_t | h_t), y_t ~ p(y_t | s_t, h_t),
                      r_t ~ p(r_t | s_t, h_t), trained on chunks of D_real
                      (:class:`~mbrl_course.agents.latent.WorldModelLearner`)
    planning-algo  := CEM over u_{t:t+H-1}, maximising G = Σ_{k=1}^{H} E[r(h_{t+k}, s_{t+k})] imagined open loop
                      from the filtered state (h_t, s_t) ~ q(· | y_{≤t}, a_{<t})
                      (:func:`~mbrl_course.planning.latent.latent_return_objective`)

The agent filters each real frame (:class:`~mbrl_course.agents.latent.LatentFilter`), plans with the project's
CEM unchanged, executes the plan's first action plus Gaussian exploration noise (σ = 0.3, clipped to the box),
and trains the world model on D_real after each episode (``train.num_steps`` Adam steps, PlaNet's "collect
interval" of 100). Action repeat lives in the pixel env (:func:`~mbrl_course.envs.make_pixel_env`). The loop is
:func:`~mbrl_course.agents.mpc.mpc_loop` unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mbrl_course._checks import check_positive_float, check_positive_int, resolve_device
from mbrl_course.agents.configs import CEMConfig
from mbrl_course.agents.dyna import GreedyActor
from mbrl_course.agents.latent import (
    LatentActor,
    LatentFilter,
    WorldModelLearner,
    build_world_model,
    check_horizon,
    world_model_for_budget,
)
from mbrl_course.budget import Tier, by_budget
from mbrl_course.data import EpisodeBuffer
from mbrl_course.planning import CEM
from mbrl_course.planning.latent import latent_return_objective
from mbrl_course.ssm.rssm import LatentState, WorldModelConfig, WorldModelTrainConfig

__all__ = ["PlaNetAgent", "PlaNetConfig", "make_planet"]


def _train(num_steps: int, batch_size: int, chunk_length: int) -> WorldModelTrainConfig:
    """PlaNet's optimiser settings (Adam 1e-3, ε 1e-4, clip 1000, free nats 3) with a tier's sizes; no progress
    bar of its own (the run's bar counts episodes; ``--set train.progress=true`` shows each training's steps)."""
    return WorldModelTrainConfig(num_steps=num_steps, batch_size=batch_size, chunk_length=chunk_length,
                                 learning_rate=1e-3, adam_eps=1e-4, grad_clip=1000.0, free_nats=3.0,
                                 progress=False)


@dataclass
class PlaNetConfig:
    """Hyperparameters of PlaNet (defaults: the paper's). :meth:`for_budget` gives the compute tier's defaults."""

    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    """f_ψ, the RSSM (``action_dim`` and ``obs_dim`` are set from the env)"""
    train: WorldModelTrainConfig = field(default_factory=lambda: _train(100, 50, 50))
    """each training of f_ψ on D_real: ``num_steps`` Adam steps per episode (PlaNet: 100), B chunks of L steps"""
    planner: CEMConfig = field(default_factory=lambda: CEMConfig(horizon=12, population=1000, elites=100,
                                                                 iterations=10, momentum=0.0))
    """CEM over latent action sequences (PlaNet: H 12, 1000 candidates, 100 elites, 10 iterations, no smoothing)"""
    exploration_std: float = 0.3
    """σ of the Gaussian noise added to the planned action while collecting data"""
    seed_episodes: int = 5
    """episodes of random actions that seed D_real"""
    buffer_capacity: int = 100_000
    """most agent steps D_real keeps (12 KiB per 64×64×3 frame)"""

    def __post_init__(self) -> None:
        check_positive_float("exploration_std", self.exploration_std, allow_zero=True)
        check_positive_int("seed_episodes", self.seed_episodes)
        check_positive_int("buffer_capacity", self.buffer_capacity)
        check_horizon("planner.horizon", self.planner.horizon, self.train.chunk_length)

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> PlaNetConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None): the paper's, smaller."""
        return by_budget(
            smoke=cls(model=world_model_for_budget("smoke"), train=_train(2, 2, 6),
                      planner=CEMConfig(horizon=4, population=16, elites=4, iterations=2, momentum=0.0),
                      seed_episodes=1, buffer_capacity=2_000),
            # 2 CPU cores: a conv depth of 8 and a small recurrence
            # 100 Adam steps per episode (PlaNet's collect interval): with 50, 30 episodes stayed at the random
            # policy's return on Pendulum; with 100, 20 episodes reach about −620 (benchmarks/RESULTS.md)
            default=cls(model=world_model_for_budget("default"), train=_train(100, 16, 20),
                        planner=CEMConfig(horizon=12, population=200, elites=20, iterations=5, momentum=0.0),
                        seed_episodes=3, buffer_capacity=20_000),
            full=cls(),
            tier=tier,
        )


class PlaNetAgent:
    """u ~ CEM(G, (h_t, s_t)) + ε: filter the frame, plan in latent space, execute the plan's first action.

    ``world_model``: the RSSM and its training; ``planner``: the project's CEM over ``(H, A)`` plans;
    ``exploration_std`` σ of the noise added while collecting; ``generator`` draws the filter's and the
    imagination's latent samples and the noise.
    """

    def __init__(self, world_model: WorldModelLearner, planner: CEM, action_space: gym.spaces.Box, *,
                 exploration_std: float = 0.3, device: torch.device | str = "cpu", seed: int | None = 0) -> None:
        self.world_model = world_model
        self.planner = planner
        self.device = resolve_device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed((0 if seed is None else int(seed)) + 1)
        self.filter = LatentFilter(world_model.model, generator=self.generator)
        self.actor = LatentActor(self.filter, action_space.low, action_space.high, exploration_std, self.generator)
        self.last_fit: list[float] | None = None

    def plan(self, state: LatentState, explore: bool = False) -> torch.Tensor:
        """u_{t:t+H-1} := CEM(G) from the filtered state; returns its first action u_t, (A,)."""
        objective = latent_return_objective(self.world_model.model, state, generator=self.generator)
        return self.planner.plan(objective)[0]

    def reset(self) -> None:
        """Start of an episode: the zero filter state, no warm-start plan."""
        self.planner.reset()
        self.actor.reset()

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Filter the frame ``obs`` (64, 64, 3) uint8, plan, return u_t (+ ε unless ``deterministic``): (A,)."""
        return self.actor.step(obs, self.plan, not deterministic)

    def update(self, buffer: EpisodeBuffer) -> list[float]:
        """ψ := argmin_ψ L(RSSM, D_real): ``train.num_steps`` Adam steps on chunks of D_real."""
        self.last_fit = self.world_model.train(buffer)
        return self.last_fit

    def evaluation_actor(self) -> GreedyActor:
        """The planner without exploration noise (``act(obs, deterministic=True)``)."""
        return GreedyActor(self)

    def state_dict(self) -> dict[str, Any]:
        """The world model (RSSM, Adam, chunk generator), the acting generator and the planner's generator."""
        return {"world_model": self.world_model.state_dict(), "generator": self.generator.get_state(),
                "planner": self.planner.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (refusing an RSSM built for another observation size)."""
        self.world_model.load_state_dict(state["world_model"])
        self.generator.set_state(state["generator"].cpu())
        self.planner.generator.set_state(state["planner"].cpu())


def make_planet(env: gym.Env, env_id: str, config: PlaNetConfig, *, device: torch.device | str = "cpu",
                seed: int | None = 0) -> PlaNetAgent:
    """Build the PlaNet agent for a pixel ``env``: RSSM + CEM over latent imagination + exploration noise."""
    world_model = build_world_model(env, config.model, config.train, ("planner.horizon", config.planner.horizon),
                                    device=device, seed=seed)
    planner = config.planner.build(env.action_space.low, env.action_space.high, device=device, seed=seed)
    return PlaNetAgent(world_model, planner, env.action_space, exploration_std=config.exploration_std,
                       device=device, seed=seed)
