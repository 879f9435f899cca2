"""Sample efficiency of PETS on Pendulum-v1, and the gap to a planner that knows the true dynamics.

For each seed: ``mbrl_course.runs.train("pets", "Pendulum-v1", episodes=10)`` in the ``default``
compute tier (1 random episode, then 9 PETS episodes of 200 steps), and the mean return over
episodes 6–10. The "oracle" runs the same CEM planner on the env's true dynamics
(``mbrl_course.models.TrueDynamics``) on the same episodes (same reset seeds): the difference is
what the learned model costs.

    .venv/bin/python benchmarks/pets_pendulum.py [--seeds 0 1 2] [--out benchmarks/out/pets] [--threads N]

Writes a PNG of the learning curves next to the oracle's level under ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from mbrl_course.agents import MPCAgent, PETSConfig, run_episode
from mbrl_course.envs import make_env, reward_fn, termination_fn
from mbrl_course.models import TrueDynamics
from mbrl_course.runs import train
from mbrl_course.viz import plot_learning_curves

ENV = "Pendulum-v1"
EPISODES = 10
SCORED = range(5, 10)  # episodes 6-10, zero-based


def oracle_agent(config: PETSConfig, seed: int) -> MPCAgent:
    """CEM on the true dynamics: the MPC loop's agent with f_ψ := f (``TrueDynamics``), nothing to learn."""
    env = make_env(ENV)
    planner = config.planner.build(env.action_space.low, env.action_space.high, seed=seed)
    return MPCAgent(TrueDynamics(ENV), planner, reward_fn=reward_fn(ENV), termination_fn=termination_fn(ENV))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/pets"))
    parser.add_argument("--tier", default="default", choices=("smoke", "default", "full"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = PETSConfig.for_budget(args.tier)
    print(f"PETS config ({args.tier}): {config}; torch threads: {torch.get_num_threads()}")
    runs, summary = {}, []
    for seed in args.seeds:
        start = time.perf_counter()
        rows = train("pets", ENV, episodes=EPISODES, out=args.out / f"seed{seed}", seed=seed, tier=args.tier,
                     overwrite=True, record=False, progress=False)
        wall = time.perf_counter() - start
        pets = statistics.mean(rows[e]["return"] for e in SCORED)
        env = make_env(ENV)
        oracle_mpc = oracle_agent(config, seed)
        oracle = statistics.mean(run_episode(env, oracle_mpc, None, episode=e, seed=seed).ret for e in SCORED)
        runs[f"PETS seed {seed}"] = rows
        summary.append((seed, pets, oracle, wall))
        print(f"seed {seed}: PETS mean return ep 6-10 = {pets:.1f}; oracle (true-dynamics CEM) = {oracle:.1f}; "
              f"gap = {oracle - pets:.1f}; wall = {wall / 60:.1f} min; "
              f"returns = {[round(r['return'], 1) for r in rows]}")
    oracle_mean = statistics.mean(s[2] for s in summary)
    plot_learning_curves(runs, args.out / "pets_pendulum.png", title="PETS on Pendulum-v1 (default tier)",
                         seed_episodes=config.seed_episodes, reference={"true-dynamics CEM": oracle_mean})
    worst = min(s[1] for s in summary)
    print(f"min_pets_return_ep6_10={worst:.1f} mean_oracle_return={oracle_mean:.1f} "
          f"max_wall_min={max(s[3] for s in summary) / 60:.1f}")


if __name__ == "__main__":
    main()
