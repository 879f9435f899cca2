"""Sample efficiency of MBPO against SAC alone on InvertedPendulum-v5 (the Dyna loop with and without f_ψ).

For each seed, two runs of :func:`mbrl_course.agents.dyna_loop` with the same SAC learner:

- **MBPO** (:func:`mbrl_course.agents.make_mbpo`): 7-member ensemble (5 elites, 4 × 200), refit every
  250 env steps (minibatches of 64, holdout early stopping); 100,000 branched rollouts of length 1
  every 250 steps, D_sim keeping the last 4 rounds; SAC (2 × 128) minibatches of 256 with 5 % real
  data; 20 SAC updates per env step; 500 random env steps first; target entropy −0.05 (MBPO's
  setting for this env). Up to 10,000 env steps.
- **SAC alone** (:func:`mbrl_course.agents.make_sac`): one update per env step on D_real, the same
  networks and learning rate, the same 500 random steps. Up to ``--sac-steps`` env steps.

Every ``--eval-every`` env steps the deterministic policy (the tanh of the mean action) plays
``--eval-episodes`` episodes on a separate env (reset seeds 10,000 + k); "steps to 950" is the first
evaluation at which their average return is ≥ 950. A run stops once it got there (the curves show
it), or at its budget. The claims checked (and printed): MBPO gets there within 10,000 env steps on
every seed, and SAC alone needs at least 3× as many env steps as MBPO on the same seed.

    .venv/bin/python benchmarks/mbpo_inverted_pendulum.py --seeds 0 1 2          # hours of CPU
    .venv/bin/python benchmarks/mbpo_inverted_pendulum.py --quick                # end-to-end check, ~3 min

Writes ``--out``/curves.png (evaluation returns against env steps, both algorithms, every seed),
``--out``/{mbpo,sac}-seed{N}.csv and prints wall times (training, without the evaluation episodes).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from mbrl_course.agents import (
    EnsembleConfig,
    FitConfig,
    GreedyActor,
    MBPOConfig,
    SACAgentConfig,
    dyna_loop,
    make_mbpo,
    make_sac,
    run_episode,
)
from mbrl_course.agents.mbpo import mbpo_loop_kwargs
from mbrl_course.agents.sac import sac_loop_kwargs
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env
from mbrl_course.rl import SACConfig
from mbrl_course.viz import plot_learning_curves

ENV = "InvertedPendulum-v5"
THRESHOLD = 950.0

LEARNER = SACConfig(hidden_sizes=(128, 128), lr=3e-4, target_entropy=-0.05)  # the same SAC in both runs
MBPO = MBPOConfig(
    model=EnsembleConfig(ensemble_size=7, num_elites=5, hidden_size=200, num_layers=4),
    fit=FitConfig(epochs=100, batch_size=64), learner=LEARNER, model_every=250, rollout_every=250,
    rollout_batch_size=100_000, rollout_schedule=(0, 1, 1, 1), sim_rounds=4, real_ratio=0.05, batch_size=256,
    updates_per_step=20, seed_steps=500,
)
SAC = SACAgentConfig(learner=LEARNER, batch_size=256, updates_per_step=1, seed_steps=500)


class Reached(Exception):
    """Raised from the step callback to end a run once it reached the threshold."""


def run(algo: str, seed: int, max_steps: int, eval_every: int, eval_episodes: int, mbpo: MBPOConfig,
        sac: SACAgentConfig) -> tuple[list[dict[str, float]], int | None, float]:
    """One run; returns (evaluation rows, steps to THRESHOLD or None, training wall seconds)."""
    torch.manual_seed(seed)
    env, eval_env = make_env(ENV), make_env(ENV)
    if algo == "mbpo":
        agent, loop_kwargs = make_mbpo(env, ENV, mbpo, seed=seed), mbpo_loop_kwargs(mbpo)
    else:
        agent, loop_kwargs = make_sac(env, ENV, sac, seed=seed), sac_loop_kwargs(sac)
    buffer = ReplayBuffer(env.observation_space.shape[0], env.action_space.shape[0])
    greedy = GreedyActor(agent.learner)
    rows: list[dict[str, float]] = []
    state = {"eval_s": 0.0, "reached": None}
    start = time.perf_counter()

    def on_step(agent) -> None:
        if agent.env_steps % eval_every:
            return
        t0 = time.perf_counter()
        returns = [run_episode(eval_env, greedy, None, episode=k, seed=10_000).ret for k in range(eval_episodes)]
        state["eval_s"] += time.perf_counter() - t0
        mean = float(np.mean(returns))
        rows.append({"episode": len(rows), "return": mean, "env_steps": agent.env_steps,
                     "wall_s": time.perf_counter() - start - state["eval_s"]})
        print(f"  {algo} seed {seed}: {agent.env_steps:6d} env steps, eval return {mean:7.1f} "
              f"({rows[-1]['wall_s'] / 60:.1f} min)", flush=True)
        if mean >= THRESHOLD:
            state["reached"] = agent.env_steps
            raise Reached

    try:
        dyna_loop(env, agent, buffer, episodes=10**9, max_env_steps=max_steps, seed=seed, on_step=on_step,
                  **loop_kwargs)
    except Reached:
        pass
    wall = time.perf_counter() - start - state["eval_s"]
    env.close()
    eval_env.close()
    return rows, state["reached"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mbpo-steps", type=int, default=10_000, help="MBPO's env-step budget")
    parser.add_argument("--sac-steps", type=int, default=60_000, help="SAC's env-step budget")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: at these network sizes a second thread gains little, and on a "
                             "busy machine it slows every small operation tenfold)")
    parser.add_argument("--quick", action="store_true",
                        help="a short end-to-end check: seed 0, 1,500 env steps each, 20,000 rollouts per round")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/mbpo_inverted_pendulum"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mbpo, sac = MBPO, SAC
    if args.quick:
        args.seeds, args.mbpo_steps, args.sac_steps, args.eval_every, args.eval_episodes = [0], 1500, 1500, 500, 2
        mbpo = replace(MBPO, rollout_batch_size=20_000, fit=replace(MBPO.fit, epochs=20))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"MBPO: {mbpo}\nSAC: {sac}\ntorch threads: {torch.get_num_threads()}", flush=True)

    curves, summary = {}, []
    for seed in args.seeds:
        result = {}
        for algo, budget in (("mbpo", args.mbpo_steps), ("sac", args.sac_steps)):
            rows, reached, wall = run(algo, seed, budget, args.eval_every, args.eval_episodes, mbpo, sac)
            curves[f"{algo.upper()} seed {seed}"] = rows
            result[algo] = (reached, wall, budget)
            with open(args.out / f"{algo}-seed{seed}.csv", "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=["env_steps", "return", "wall_s"])
                writer.writeheader()
                writer.writerows({k: r[k] for k in ("env_steps", "return", "wall_s")} for r in rows)
            got = f"reached {THRESHOLD:.0f} at {reached} env steps" if reached else f"not {THRESHOLD:.0f} within {budget}"
            print(f"{algo} seed {seed}: {got}; training wall {wall / 60:.1f} min", flush=True)
        summary.append((seed, result))

    plot_learning_curves(curves, args.out / "curves.png", reference={f"{THRESHOLD:.0f}": THRESHOLD},
                         title="MBPO vs SAC on InvertedPendulum-v5 (deterministic evaluation)")
    print("\nseed  MBPO steps  SAC steps   ratio  MBPO wall  SAC wall")
    ok_mbpo = ok_ratio = True
    for seed, result in summary:
        (m_steps, m_wall, _), (s_steps, s_wall, s_budget) = result["mbpo"], result["sac"]
        ok_mbpo &= m_steps is not None and m_steps <= 10_000
        if m_steps is None:
            ratio, ok_ratio = "n/a", False
        elif s_steps is None:
            ratio = f">{s_budget / m_steps:.1f}"
            ok_ratio &= s_budget >= 3 * m_steps
        else:
            ratio = f"{s_steps / m_steps:.1f}"
            ok_ratio &= s_steps >= 3 * m_steps
        print(f"{seed:4d}  {m_steps or '-':>10}  {s_steps or f'>{s_budget}':>9}  {ratio:>6}  "
              f"{m_wall / 60:7.1f} m  {s_wall / 60:6.1f} m")
    walls = [r['mbpo'][1] for _, r in summary]
    if args.quick:
        print("(--quick: the budgets are too short for the claims below; this run checks the script)")
    print(f"MBPO reaches {THRESHOLD:.0f} within 10,000 env steps on every seed: {ok_mbpo}")
    print(f"SAC alone needs at least 3x MBPO's env steps on every seed: {ok_ratio}")
    print(f"MBPO training wall: mean {statistics.mean(walls) / 60:.1f} min, max {max(walls) / 60:.1f} min "
          f"({torch.get_num_threads()} threads); curves in {args.out / 'curves.png'}")


if __name__ == "__main__":
    main()
