"""The lecture's loops and the agents built on them.

- :func:`mpc_loop` — Approach 2 (MPC): plan in f_ψ, act, grow D_real, refit f_ψ.
- PETS (:func:`make_pets`) and MBMF's model-based part (:func:`make_mbmf`) — two choices of model and
  planner for that loop.
- :func:`dyna_loop` — Approach 1 (Dyna): act with μ_θ, grow D_real, refit f_ψ, then K policy updates
  ``learner.policy_update(f_ψ, D_real)`` (a :class:`Learner`). MBPO (:func:`make_mbpo`: ensemble +
  :class:`MBPOLearner` with SAC) and SAC alone (:func:`make_sac`: no model) are two choices of model and
  learner for it.
- Deep PILCO (:func:`make_deep_pilco`: dropout network + :class:`DeepPILCOLearner`, PILCO's RBF controller
  optimised through particle rollouts) — an episodic learner in the Dyna loop.
- :func:`mbmf_ft_loop` — MBMF's hand-over: the MPC loop, then the Dyna loop with a learner that clones
  the MPC controller into a policy by DAgger and fine-tunes it by PPO.
- PlaNet (:func:`make_planet`: an RSSM learned from pixels + CEM over its latent imagination) — the MPC loop
  in a latent space; Dreamer (:func:`make_dreamer`: the RSSM + :class:`DreamerLearner`, actor-critic in
  imagination) — the Dyna loop in it. What both share (:class:`WorldModelLearner`, :class:`LatentFilter`) is
  in :mod:`~mbrl_course.agents.latent`.
- Guided policy search (:func:`make_gps`: iLQR's linear-Gaussian controllers give guiding samples, a neural policy
  maximises their importance-sampled return) — an episodic learner in the Dyna loop.
- :mod:`~mbrl_course.agents.configs` — the parts the agents' configs are composed of (model, fit, planner).

Runs on disk (``train``, ``evaluate``: CSVs, checkpoints, figures) live a layer above, in :mod:`mbrl_course.runs`.
"""

from mbrl_course.agents.configs import (
    CEMConfig,
    DeltaMLPConfig,
    EnsembleConfig,
    FitConfig,
    RandomShootingConfig,
)
from mbrl_course.agents.deep_pilco import DeepPILCOConfig, DeepPILCOLearner, make_deep_pilco
from mbrl_course.agents.dreamer import DreamerConfig, DreamerLearner, dreamer_loop_kwargs, make_dreamer
from mbrl_course.agents.dyna import (
    DynaAgent,
    GreedyActor,
    Learner,
    Rollouts,
    dyna_loop,
    imagine_rollouts,
)
from mbrl_course.agents.gps import GPSConfig, GPSLearner, gps_loop_kwargs, make_gps
from mbrl_course.agents.latent import LatentFilter, WorldModelLearner
from mbrl_course.agents.mbmf import MBMFConfig, make_mbmf
from mbrl_course.agents.mbmf_ft import MBMFFineTuner, MBMFFTConfig, PolicyRecorder, make_mbmf_ft, mbmf_ft_loop
from mbrl_course.agents.mbpo import MBPOConfig, MBPOLearner, make_mbpo, rollout_length
from mbrl_course.agents.mpc import (
    Agent,
    CheckpointableAgent,
    EpisodeResult,
    MPCAgent,
    RandomAgent,
    mpc_loop,
    run_episode,
)
from mbrl_course.agents.pets import PETSConfig, make_pets
from mbrl_course.agents.planet import PlaNetAgent, PlaNetConfig, make_planet
from mbrl_course.agents.sac import SACAgentConfig, make_sac

__all__ = [
    "Agent", "CheckpointableAgent", "EpisodeResult", "MPCAgent", "RandomAgent", "mpc_loop", "run_episode",
    "PETSConfig", "make_pets", "MBMFConfig", "make_mbmf",
    "DynaAgent", "GreedyActor", "Learner", "Rollouts", "dyna_loop", "imagine_rollouts", "rollout_length",
    "MBPOConfig", "MBPOLearner", "make_mbpo", "SACAgentConfig", "make_sac",
    "DeepPILCOConfig", "DeepPILCOLearner", "make_deep_pilco",
    "MBMFFTConfig", "MBMFFineTuner", "PolicyRecorder", "make_mbmf_ft", "mbmf_ft_loop",
    "EnsembleConfig", "DeltaMLPConfig", "FitConfig", "CEMConfig", "RandomShootingConfig",
    "PlaNetAgent", "PlaNetConfig", "make_planet", "DreamerConfig", "DreamerLearner", "dreamer_loop_kwargs",
    "make_dreamer", "LatentFilter", "WorldModelLearner",
    "GPSConfig", "GPSLearner", "gps_loop_kwargs", "make_gps",
]

_MOVED_TO_RUNS = ("ALGORITHMS", "make_config", "train", "evaluate", "load_run", "summarize")


def __getattr__(name: str):
    if name in _MOVED_TO_RUNS:  # the names of runs on disk, which lived here before mbrl_course.runs
        raise ImportError(f"mbrl_course.agents.{name} moved to mbrl_course.runs: "
                          f"write `from mbrl_course.runs import {name}`")
    raise AttributeError(f"module 'mbrl_course.agents' has no attribute {name!r}")
