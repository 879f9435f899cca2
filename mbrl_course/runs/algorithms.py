"""The named algorithms a run can train, and their configs with command-line settings applied.

Each named algorithm (:data:`ALGORITHMS`) is a config, a builder and the loop that runs it: the MPC
loop (PETS, MBMF, PlaNet), the Dyna loop (MBPO, SAC alone, PILCO, Deep PILCO, Dreamer) or MBMF's
fine-tuning (MPC → DAgger → PPO). PlaNet and Dreamer learn from 64×64×3 frames (``pixels``): their runs
use the pixel env and an :class:`~mbrl_course.data.EpisodeBuffer` of uint8 frames.
:func:`make_config` gives its config for a compute tier with ``--set`` settings applied; a setting's
key is its path in the composed config (``planner.horizon``, ``learner.lr``, ``model.ensemble_size``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mbrl_course._checks import check_choice
from mbrl_course.agents.deep_pilco import DeepPILCOConfig, deep_pilco_loop_kwargs, make_deep_pilco
from mbrl_course.agents.dreamer import DreamerConfig, dreamer_loop_kwargs, make_dreamer
from mbrl_course.agents.gps import GPSConfig, gps_loop_kwargs, make_gps
from mbrl_course.agents.latent import pixel_buffer
from mbrl_course.agents.mbmf import MBMFConfig, make_mbmf
from mbrl_course.agents.mbmf_ft import MBMFFTConfig, make_mbmf_ft, mbmf_ft_loop_kwargs
from mbrl_course.agents.mbpo import MBPOConfig, make_mbpo, mbpo_loop_kwargs
from mbrl_course.agents.pets import PETSConfig, make_pets
from mbrl_course.agents.pilco import PILCOConfig, make_pilco, pilco_loop_kwargs
from mbrl_course.agents.planet import PlaNetConfig, make_planet
from mbrl_course.agents.sac import SACAgentConfig, make_sac, sac_loop_kwargs
from mbrl_course.budget import Tier
from mbrl_course.data import ReplayBuffer
from mbrl_course.runs.settings import apply_overrides

__all__ = ["ALGORITHMS", "Algorithm", "PIXEL_ALGORITHMS", "make_config"]


def _mpc_loop_kwargs(config) -> dict[str, Any]:
    return {"seed_episodes": config.seed_episodes}


def _seeded_by_episodes(loop_kwargs: Mapping[str, Any], rows: list[dict[str, float]]) -> int:
    return min(loop_kwargs["seed_episodes"], len(rows))


def _one_random_trial(loop_kwargs: Mapping[str, Any], rows: list[dict[str, float]]) -> int:
    return min(1, len(rows))


_PILCO_TRIALS = {"mbrl_course/CartPoleSwingUp-v0": {"max_episode_steps": 40}}  # the paper's 4 s trials


def _seeded_by_steps(loop_kwargs: Mapping[str, Any], rows: list[dict[str, float]]) -> int:
    return sum(1 for row in rows if row["env_steps"] <= loop_kwargs["seed_steps"])


def _transition_buffer(env, config, device) -> ReplayBuffer:
    """D_real of the state-based agents: transitions of flat observations."""
    return ReplayBuffer(env.observation_space.shape[0], env.action_space.shape[0], device=device)


def _frame_buffer(env, config, device):
    """D_real of the pixel agents: whole episodes of uint8 frames, ``config.buffer_capacity`` steps."""
    return pixel_buffer(env, config.buffer_capacity, device)


@dataclass(frozen=True)
class Algorithm:
    """A named agent: its config class, the function that builds it for an env, and the loop that runs it.

    Every agent built is checkpointed by its ``state_dict()`` / ``load_state_dict()`` and evaluated with
    its ``evaluation_actor()`` (:class:`~mbrl_course.agents.CheckpointableAgent`).
    """

    config_cls: type
    """the dataclass of its hyperparameters, with ``for_budget(tier)``"""
    build: Callable[..., Any]
    """``build(env, env_id, config, device=, seed=)`` -> agent"""
    loop: str = "mpc"
    """which loop runs it: "mpc" (:func:`mpc_loop`), "dyna" (:func:`dyna_loop`) or "mbmf_ft" (:func:`mbmf_ft_loop`)"""
    loop_kwargs: Callable[[Any], dict[str, Any]] = _mpc_loop_kwargs
    """config -> the loop's keyword arguments (its schedule)"""
    seeded: Callable[[Mapping[str, Any], list[dict[str, float]]], int] = _seeded_by_episodes
    """(loop kwargs, rows of returns.csv) -> how many first episodes acted at random (marked in the plot)"""
    moved: Mapping[str, str] = field(default_factory=dict)
    """settings of the flat configs before they were composed -> their keys now (for the error message)"""
    env_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """env id -> ``make_env`` keyword arguments the algorithm's paper setting implies (e.g. PILCO's 4 s
    cart-pole trials); the caller's ``env_kwargs`` win"""
    pixels: bool = False
    """True: learns from 64×64×3 frames (the run needs ``--pixels``); False: from the env's state vector"""
    make_buffer: Callable[[Any, Any, Any], Any] = _transition_buffer
    """(env, config, device) -> D_real, empty"""
    world_model: Callable[[Any], Any] | None = None
    """agent -> its latent world model (:class:`~mbrl_course.ssm.rssm.RecurrentSSM`), whose reconstructions and
    open-loop imagination ``rollout.gif`` shows beside the real frames; None: the GIF shows the env only"""


_FIT = {name: f"fit.{name}" for name in ("epochs", "batch_size", "lr", "weight_decay", "patience")}
_MBMF_MOVED = {"hidden_sizes": "model.hidden_sizes", "horizon": "planner.horizon", "population": "planner.population",
               **_FIT}
_SAC_MOVED = {name: f"learner.{name}" for name in ("hidden_sizes", "gamma", "tau", "lr", "init_alpha", "target_entropy")}

ALGORITHMS: dict[str, Algorithm] = {
    "pets": Algorithm(PETSConfig, make_pets, moved={
        **{name: f"model.{name}" for name in ("ensemble_size", "hidden_size", "num_layers")},
        **{name: f"planner.{name}" for name in ("horizon", "population", "elites", "iterations", "momentum")},
        **_FIT}),
    "mbmf": Algorithm(MBMFConfig, make_mbmf, moved=_MBMF_MOVED),
    "mbpo": Algorithm(MBPOConfig, make_mbpo, "dyna", mbpo_loop_kwargs, _seeded_by_steps, moved={
        **{name: f"model.{name}" for name in ("ensemble_size", "num_elites", "hidden_size", "num_layers")},
        **{f"model_{name}": f"fit.{name}"
           for name in ("epochs", "max_updates", "batch_size", "lr", "weight_decay", "patience")},
        **_SAC_MOVED}),
    "pilco": Algorithm(PILCOConfig, make_pilco, "dyna", pilco_loop_kwargs, _one_random_trial,
                       env_defaults=_PILCO_TRIALS),
    "sac": Algorithm(SACAgentConfig, make_sac, "dyna", sac_loop_kwargs, _seeded_by_steps, moved=_SAC_MOVED),
    "mbmf-ft": Algorithm(MBMFFTConfig, make_mbmf_ft, "mbmf_ft", mbmf_ft_loop_kwargs, moved={
        **{old: f"expert.{new}" for old, new in _MBMF_MOVED.items()}, "seed_episodes": "expert.seed_episodes",
        "policy_hidden_sizes": "learner.hidden_sizes", "policy_log_std": "learner.init_log_std",
        **{f"ppo_{name}": f"learner.{name}" for name in ("epochs", "minibatch_size", "lr", "clip", "target_kl")},
        **{name: f"learner.{name}" for name in ("gamma", "gae_lambda", "reward_scale")}}),
    "deep-pilco": Algorithm(DeepPILCOConfig, make_deep_pilco, "dyna", deep_pilco_loop_kwargs, _one_random_trial),
    "planet": Algorithm(PlaNetConfig, make_planet, pixels=True, make_buffer=_frame_buffer,
                        world_model=lambda agent: agent.world_model.model),
    "dreamer": Algorithm(DreamerConfig, make_dreamer, "dyna", dreamer_loop_kwargs, _seeded_by_steps, pixels=True,
                         make_buffer=_frame_buffer, world_model=lambda agent: agent.learner.world_model.model),
    "gps": Algorithm(GPSConfig, make_gps, "dyna", gps_loop_kwargs, lambda loop_kwargs, rows: 0),
}
PIXEL_ALGORITHMS = tuple(name for name, spec in ALGORITHMS.items() if spec.pixels)
"""the algorithms that learn from frames (``--pixels``)"""


def make_config(algo: str, *, tier: Tier | None = None, overrides: Mapping[str, Any] | None = None):
    """The config of ``algo`` for a compute tier, with ``overrides`` (key -> value) applied.

    A key is a setting's path in the composed config: ``make_config("mbpo", overrides={"learner.lr": "3e-4",
    "model.ensemble_size": "7", "fit.epochs": "3"})``. Strings convert to the setting's type as on the
    command line (``"64,64"`` → (64, 64), ``"true"`` → True, ``"none"`` → None).
    """
    check_choice("algo", algo, tuple(ALGORITHMS))
    spec = ALGORITHMS[algo]
    return apply_overrides(spec.config_cls.for_budget(tier), overrides or {}, owner=algo, moved=spec.moved)
