"""mbrl_course: reference implementations for an open course on model-based reinforcement learning.

The package follows the lecture (Kandemir, *Model-Based Reinforcement Learning*) layer by layer:

- :mod:`mbrl_course.envs`      environments and batched torch reward / termination functions
- :mod:`mbrl_course.data`      the real-data buffer D_real, splits, bootstrap, normalisers
- :mod:`mbrl_course.models`    dynamics models f_ψ and batched imagination (TS1 / TS∞)
- :mod:`mbrl_course.planning`  planning-algo: random shooting, CEM, MPPI
- :mod:`mbrl_course.agents`    the lecture's MPC and Dyna loops and the agents built on them (PETS, MBMF, MBPO)
- :mod:`mbrl_course.runs`      runs on disk: train / evaluate a named agent, its CSV, checkpoint and figures
- :mod:`mbrl_course.filters`   exact inference in state-space models (Bayesian and Kalman filtering)
- :mod:`mbrl_course.viz`       the figures and animations the lectures draw

:func:`budget` says which compute tier (smoke / default / full) this process runs in.
"""

from mbrl_course.budget import budget, by_budget

__version__ = "0.1.0"
__all__ = ["budget", "by_budget", "__version__"]
