"""The lecture's loops and the agents built on them.

- :func:`mpc_loop` — Approach 2 (MPC): plan in f_ψ, act, grow D_real, refit f_ψ.
- PETS (:func:`make_pets`) and MBMF's model-based part (:func:`make_mbmf`) — two choices of model and
  planner for that loop.
- :func:`train` / :func:`evaluate` — runs on disk, as the ``mbrl-course`` command line uses them.
"""

from mbrl_course.agents.mbmf import MBMFConfig, make_mbmf
from mbrl_course.agents.mpc import Agent, EpisodeResult, MPCAgent, RandomAgent, mpc_loop, run_episode
from mbrl_course.agents.pets import PETSConfig, make_pets
from mbrl_course.agents.runner import ALGORITHMS, evaluate, load_run, make_config, summarize, train

__all__ = [
    "Agent", "EpisodeResult", "MPCAgent", "RandomAgent", "mpc_loop", "run_episode",
    "PETSConfig", "make_pets", "MBMFConfig", "make_mbmf",
    "ALGORITHMS", "make_config", "train", "evaluate", "load_run", "summarize",
]
