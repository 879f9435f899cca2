"""Runs on disk: train a named algorithm, write its CSV, checkpoint, figures and GIF; evaluate, reload it.

A layer above :mod:`mbrl_course.agents` (which draws and writes nothing), beside the command line:

- :data:`ALGORITHMS` / :func:`make_config` — the named algorithms (PETS, MBMF, MBPO, SAC, MBMF with
  fine-tuning) and their composed configs with ``--set`` settings applied (``learner.lr=3e-4``);
- :func:`train` / :func:`evaluate` / :func:`load_run` / :func:`summarize` — what ``mbrl-course train``
  and ``mbrl-course evaluate`` do.
"""

from mbrl_course.runs.algorithms import ALGORITHMS, Algorithm, make_config
from mbrl_course.runs.runner import CHECKPOINT_VERSION, evaluate, load_run, summarize, train

__all__ = ["ALGORITHMS", "Algorithm", "CHECKPOINT_VERSION", "make_config", "train", "evaluate", "load_run",
           "summarize"]
