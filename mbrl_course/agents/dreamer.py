"""Dreamer (Hafner et al., 2020): the lecture's Dyna loop in the latent space of an RSSM learned from pixels.

The lecture's [Dyna] recipe, for a POMDP observed through 64×64×3 frames y_t:

    f_ψ                  := the RSSM, trained on chunks of D_real
                            (:class:`~mbrl_course.agents.latent.WorldModelLearner`)
    μ_θ                  := the actor q_φ(a_t | s_t) on the filtered latent state (h_t, s_t), plus exploration noise
    policy-iteration-algo := actor-critic in imagination: from the posterior states of the chunk f_ψ just trained
                             on, imagine H steps with the actor, λ-returns with the value v_ψ(s_t), the actor by
                             backpropagation through the imagined dynamics, the value by regression
                             (:class:`~mbrl_course.rl.actor_critic.ImaginationActorCritic`)

Dreamer's schedule: every C env steps (``train_every``) one Adam step of the world model on B chunks of L
steps, then one actor-critic step from that batch's B·L posterior states (Dreamer: 100 of each every 1000 env
steps, C = 10). The loop is :func:`~mbrl_course.agents.dyna.dyna_loop` unchanged, with a
:class:`~mbrl_course.agents.dyna.DynaAgent` whose model is None: the learner owns the world model, because the
RSSM is trained on sequence chunks in step with the actor-critic (each actor-critic step starts from the
posteriors of the world model's step), not refit by ``model.fit(D_real)`` on transitions as f_ψ of the other
Dyna agents is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from mbrl_course._checks import check_positive_int, resolve_device
from mbrl_course.agents.dyna import DynaAgent
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
from mbrl_course.rl.actor_critic import ActorCriticConfig, ImaginationActorCritic
from mbrl_course.ssm.rssm import LatentState, WorldModelConfig, WorldModelTrainConfig

__all__ = ["DreamerConfig", "DreamerLearner", "dreamer_loop_kwargs", "make_dreamer"]


def _train(batch_size: int, chunk_length: int) -> WorldModelTrainConfig:
    """Dreamer's world-model optimiser (Adam 6e-4, ε 1e-4, clip 100, free nats 3) with a tier's sizes; one step
    per update (``num_steps`` 1)."""
    return WorldModelTrainConfig(num_steps=1, batch_size=batch_size, chunk_length=chunk_length, learning_rate=6e-4,
                                 adam_eps=1e-4, grad_clip=100.0, free_nats=3.0, progress=False)


@dataclass
class DreamerConfig:
    """Hyperparameters of Dreamer (defaults: the paper's). :meth:`for_budget` gives the compute tier's defaults."""

    model: WorldModelConfig = field(default_factory=WorldModelConfig)
    """f_ψ, the RSSM (``action_dim`` and ``obs_dim`` are set from the env)"""
    train: WorldModelTrainConfig = field(default_factory=lambda: _train(50, 50))
    """each world-model step: B chunks of L steps (Dreamer: 50 × 50); ``num_steps`` is not used (one per update)"""
    actor_critic: ActorCriticConfig = field(default_factory=lambda: ActorCriticConfig.for_budget("full"))
    """the actor q_φ(a | s), the value v_ψ(s), their imagination (horizon, γ, λ, step sizes) and the exploration
    noise added to the actor's samples while collecting data (``exploration_noise``, Dreamer: 0.3)"""
    train_every: int = 10
    """C: one update (a world-model step and an actor-critic step) every C env steps (Dreamer: 100 per 1000)"""
    seed_steps: int = 500
    """env steps of random actions that seed D_real before learning starts (Dreamer: 5 episodes)"""
    buffer_capacity: int = 100_000
    """most agent steps D_real keeps (12 KiB per 64×64×3 frame)"""

    def __post_init__(self) -> None:
        check_positive_int("train_every", self.train_every)
        check_positive_int("seed_steps", self.seed_steps, allow_zero=True)
        check_positive_int("buffer_capacity", self.buffer_capacity)
        check_horizon("actor_critic.horizon", self.actor_critic.horizon, self.train.chunk_length)

    @classmethod
    def for_budget(cls, tier: Tier | None = None) -> DreamerConfig:
        """The config of a compute tier (``budget()`` when ``tier`` is None): the paper's, smaller."""
        return by_budget(
            smoke=cls(model=world_model_for_budget("smoke"), train=_train(2, 6),
                      actor_critic=ActorCriticConfig.for_budget("smoke", horizon=3), train_every=2, seed_steps=5, buffer_capacity=2_000),
            # 2 CPU cores: a conv depth of 8, a small recurrence, an update every 5 env steps
            default=cls(model=world_model_for_budget("default"), train=_train(16, 20),
                        actor_critic=ActorCriticConfig.for_budget("default"), train_every=5, seed_steps=300, buffer_capacity=20_000),
            full=cls(),
            tier=tier,
        )


class DreamerLearner:
    """The Dyna loop's learner for Dreamer: the world model, the actor-critic in imagination, and acting.

    ``policy_update(model, D_real)`` is called after every env step (``episodic`` False); every C-th call it
    takes one world-model step on chunks of D_real and one actor-critic step from their posterior states.
    ``act(frame, deterministic)`` filters the frame and returns the actor's action: its mode when
    ``deterministic``, else a sample plus the actor-critic's exploration noise, clipped to the box.

    The filter follows the frames this learner acts on: when the random seed steps end in the middle of an
    episode, the first frame the learner sees starts its filter from the zero state (as a training chunk starts),
    not from the frames the seed agent saw before.
    """

    episodic = False

    def __init__(self, world_model: WorldModelLearner, actor_critic: ImaginationActorCritic,
                 action_space: gym.spaces.Box, *, train_every: int = 10, device: torch.device | str = "cpu",
                 seed: int | None = 0) -> None:
        self.world_model = world_model
        self.actor_critic = actor_critic
        self.train_every = check_positive_int("train_every", train_every)
        self.device = resolve_device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed((0 if seed is None else int(seed)) + 1)
        self.filter = LatentFilter(world_model.model, generator=self.generator)
        # the noise is the actor-critic's own (ActorCriticConfig.exploration_noise), not LatentActor's
        self.actor = LatentActor(self.filter, action_space.low, action_space.high, 0.0, self.generator)
        self.calls = 0
        """policy_update calls so far (env steps since learning started)"""
        self.last_update: dict[str, Any] | None = None
        self._model_loss = torch.zeros(())

    def _choose(self, state: LatentState, explore: bool) -> torch.Tensor:
        return self.actor_critic.act(state.features, deterministic=not explore, explore=explore)[0]

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """a_t ~ q_φ(a_t | s_t) (+ ε) from the filtered state of the frame ``obs`` (64, 64, 3) uint8: (A,)."""
        return self.actor.step(obs, self._choose, not deterministic)

    def reset(self) -> None:
        """Start of an episode: the zero filter state."""
        self.actor.reset()

    def policy_update(self, model: None, real_buffer: EpisodeBuffer) -> dict[str, Any] | None:
        """Every C-th call: a world-model step on D_real, then an actor-critic step from its posterior states.

        ``model`` is the Dyna agent's f_ψ, None for Dreamer (the learner owns its world model).
        """
        self.calls += 1
        if self.calls % self.train_every:
            return None
        step = self.world_model.step(real_buffer)
        start = step.posterior[step.mask]  # the real steps' posteriors (N, ·), detached
        self._model_loss = step.loss
        self.last_update = {"model_loss": step.loss, **self.actor_critic.update(self.world_model.model, start)}
        return self.last_update

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` if the world model's or the actor-critic's loss became NaN/inf."""
        if not bool(torch.isfinite(self._model_loss)):
            raise FloatingPointError(f"Dreamer: the world model's loss became non-finite ({float(self._model_loss)}); "
                                     "lower train.learning_rate")
        if bool(self.actor_critic.nonfinite):
            raise FloatingPointError("Dreamer: the actor's or the value's loss became non-finite; lower the "
                                     "actor_critic step sizes")

    def state_dict(self) -> dict[str, Any]:
        """World model (RSSM, Adam, chunk generator), actor-critic, acting generator and the call count."""
        return {"world_model": self.world_model.state_dict(), "actor_critic": self.actor_critic.state_dict(),
                "generator": self.generator.get_state(), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (refusing an RSSM built for another observation size)."""
        self.world_model.load_state_dict(state["world_model"])
        self.actor_critic.load_state_dict(state["actor_critic"])
        self.generator.set_state(state["generator"].cpu())
        self.calls = int(state["calls"])


def make_dreamer(env: gym.Env, env_id: str, config: DreamerConfig, *, device: torch.device | str = "cpu",
                 seed: int | None = 0) -> DynaAgent:
    """Build Dreamer for a pixel ``env``: a :class:`DynaAgent` with no f_ψ of its own and a :class:`DreamerLearner`."""
    world_model = build_world_model(env, config.model, config.train,
                                    ("actor_critic.horizon", config.actor_critic.horizon), device=device, seed=seed)
    actor_critic = ImaginationActorCritic(world_model.model.feature_size, env.action_space.low,
                                          env.action_space.high, config.actor_critic, seed=seed,
                                          device=world_model.model.initial_state(1).s.device)  # "cuda" -> "cuda:0"
    learner = DreamerLearner(world_model, actor_critic, env.action_space, train_every=config.train_every,
                             device=device, seed=seed)
    return DynaAgent(learner, model=None, updates_per_step=1, device=device, seed=seed)


def dreamer_loop_kwargs(config: DreamerConfig) -> dict[str, Any]:
    """The Dyna loop's arguments for Dreamer: the random steps that seed D_real."""
    return {"seed_steps": config.seed_steps}
