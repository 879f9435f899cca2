"""The lecture's loops and the agents built on them.

- :func:`mpc_loop` — Approach 2 (MPC): plan in f_ψ, act, grow D_real, refit f_ψ.
- PETS (:func:`make_pets`) and MBMF's model-based part (:func:`make_mbmf`) — two choices of model and
  planner for that loop.
- :func:`dyna_loop` — Approach 1 (Dyna): act with μ_θ, grow D_real, refit f_ψ, imagine D_sim, run the
  policy-iteration-algo on it. MBPO (:func:`make_mbpo`: ensemble + SAC) and SAC alone
  (:func:`make_sac`: no model) are two choices of model and learner for it.
- :func:`mbmf_ft_loop` — MBMF's hand-over: the MPC controller, cloned into a policy by DAgger, fine-tuned by PPO.
- :func:`train` / :func:`evaluate` — runs on disk, as the ``mbrl-course`` command line uses them.
"""

from mbrl_course.agents.dyna import (
    DynaAgent,
    GreedyActor,
    Rollouts,
    dyna_loop,
    imagine_rollouts,
    rollout_length,
)
from mbrl_course.agents.mbmf import MBMFConfig, make_mbmf
from mbrl_course.agents.mbmf_ft import MBMFFineTuner, MBMFFTConfig, PolicyRecorder, make_mbmf_ft, mbmf_ft_loop
from mbrl_course.agents.mbpo import MBPOConfig, make_mbpo
from mbrl_course.agents.mpc import Agent, EpisodeResult, MPCAgent, RandomAgent, mpc_loop, run_episode
from mbrl_course.agents.pets import PETSConfig, make_pets
from mbrl_course.agents.runner import ALGORITHMS, evaluate, load_run, make_config, summarize, train
from mbrl_course.agents.sac import SACAgentConfig, make_sac

__all__ = [
    "Agent", "EpisodeResult", "MPCAgent", "RandomAgent", "mpc_loop", "run_episode",
    "PETSConfig", "make_pets", "MBMFConfig", "make_mbmf",
    "DynaAgent", "GreedyActor", "Rollouts", "dyna_loop", "imagine_rollouts", "rollout_length",
    "MBPOConfig", "make_mbpo", "SACAgentConfig", "make_sac",
    "MBMFFTConfig", "MBMFFineTuner", "PolicyRecorder", "make_mbmf_ft", "mbmf_ft_loop",
    "ALGORITHMS", "make_config", "train", "evaluate", "load_run", "summarize",
]
