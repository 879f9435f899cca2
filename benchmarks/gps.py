"""Guided policy search on Pendulum-v1: does the neural policy alone swing the pendulum up? And PPO, SAC from scratch.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gps.py [--seeds 0 1 2] [--iterations 12] [--tier default]
        [--eval-episodes 5] [--baseline-episodes 10] [--baseline-seeds 0] [--set learner.KEY=VALUE ...]

- **GPS** (``make_gps``, the true dynamics as iLQR's f, the issue's setting): the Dyna loop with
  :class:`~mbrl_course.agents.gps.GPSLearner`, one policy update per real episode. After every update the
  policy's mean alone (no planner) runs ``--eval-episodes`` episodes from the env's own start distribution
  (θ ~ U[−π, π], θ̇ ~ U[−1, 1], fresh reset seeds). Swung up: |θ| < 0.5 rad over the last 50 of the 200
  steps. The real episodes only measure: iLQR knows the dynamics, so env steps buy GPS nothing but its x-axis.
- **SAC** from scratch: ``mbrl_course.runs.train("sac", ...)`` at the ``--tier`` config; **PPO** from scratch:
  :class:`~mbrl_course.rl.PPO` updated after every real episode (the package has no PPO run of its own).
  Both plotted by their training episodes' returns against env steps.

Writes ``benchmarks/figures/gps_pendulum.png`` (and the curves to ``benchmarks/out/gps_pendulum.json``) and prints
one line per GPS update and a summary. ``--gps-from benchmarks/out/gps_pendulum.json`` re-plots those GPS curves
with new baselines (e.g. longer SAC and PPO runs) without training GPS again.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mbrl_course.agents import PolicyRecorder, run_episode  # noqa: E402
from mbrl_course.agents.gps import GPSConfig, make_gps  # noqa: E402
from mbrl_course.data import ReplayBuffer  # noqa: E402
from mbrl_course.envs import make_env  # noqa: E402
from mbrl_course.rl import PPO, PPOConfig  # noqa: E402
from mbrl_course.runs import train  # noqa: E402
from mbrl_course.runs.settings import apply_overrides  # noqa: E402

ENV = "Pendulum-v1"
FIGURE = Path("benchmarks/figures/gps_pendulum.png")
RESULTS_JSON = Path("benchmarks/out/gps_pendulum.json")
UPRIGHT, LAST = 0.5, 50


def evaluate(env, learner, episodes: int, seed: int) -> tuple[float, float]:
    """Mean return of π_θ's mean over ``episodes`` fresh starts, and the fraction that stay upright at the end."""
    returns, upright = [], []
    for k in range(episodes):
        obs, _ = env.reset(seed=100_000 + 1000 * seed + k)
        total, angles = 0.0, []
        for _ in range(200):
            obs, reward, terminated, truncated, _ = env.step(learner.act(obs, deterministic=True))
            total += float(reward)
            angles.append(abs(math.atan2(obs[1], obs[0])))
            if terminated or truncated:
                break
        returns.append(total)
        upright.append(max(angles[-LAST:]) < UPRIGHT)
    return statistics.mean(returns), float(np.mean(upright))


def run_gps(config: GPSConfig, seed: int, iterations: int, eval_episodes: int) -> list[dict]:
    """``iterations`` real episodes of the Dyna loop with GPS, each followed by its policy update and an evaluation."""
    env, eval_env = make_env(ENV), make_env(ENV)
    agent = make_gps(env, ENV, config, seed=seed)
    buffer = ReplayBuffer(3, 1)
    rows = [dict(env_steps=0, **dict(zip(("eval_return", "upright"), evaluate(eval_env, agent.learner,
                                                                              eval_episodes, seed))))]
    print(f"  seed {seed} update 0: eval {rows[-1]['eval_return']:.1f} upright {rows[-1]['upright']:.2f}")
    for episode in range(iterations):
        start = time.perf_counter()
        result = run_episode(env, agent, buffer, episode=episode, seed=seed)
        agent.env_steps += result.steps
        info = agent.learner.policy_update(agent.model, buffer)
        ret, up = evaluate(eval_env, agent.learner, eval_episodes, seed)
        rows.append(dict(env_steps=agent.env_steps, train_return=result.ret, eval_return=ret, upright=up,
                         wall_s=time.perf_counter() - start, **info))
        print(f"  seed {seed} update {episode + 1}: plan {info['plan_return']:.1f} samples {info['sample_return']:.1f} "
              f"ESS {info['ess']:.2f} eval {ret:.1f} upright {up:.2f} ({rows[-1]['wall_s']:.1f} s)", flush=True)
    return rows


def run_ppo(seed: int, episodes: int) -> list[tuple[int, float]]:
    """PPO from scratch, one update per real episode: (env steps, training return) per episode."""
    env = make_env(ENV)
    ppo = PPO(3, env.action_space.low, env.action_space.high, PPOConfig(), seed=seed)
    buffer, curve, steps = ReplayBuffer(3, 1), [], 0
    for episode in range(episodes):
        recorder = PolicyRecorder(ppo)
        result = run_episode(env, recorder, buffer, episode=episode, seed=seed)
        ppo.update(recorder.trajectories(buffer))
        steps += result.steps
        curve.append((steps, result.ret))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=12, help="GPS updates (= real episodes) per seed")
    parser.add_argument("--tier", default="default", choices=("smoke", "default", "full"))
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--baseline-episodes", type=int, default=10)
    parser.add_argument("--baseline-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a GPSConfig setting")
    parser.add_argument("--out", type=Path, default=FIGURE)
    parser.add_argument("--gps-from", type=Path, default=None,
                        help="plot the GPS curves of an earlier run's JSON instead of training GPS again")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = apply_overrides(GPSConfig.for_budget(args.tier), dict(s.split("=", 1) for s in args.set), owner="gps")
    print(f"GPS config ({args.tier}): {config}")
    begin = time.perf_counter()
    gps = {}
    if args.gps_from is not None:
        gps = {int(seed): rows for seed, rows in json.loads(args.gps_from.read_text())["gps"].items()}
        args.seeds = list(gps)
    for seed in args.seeds if args.gps_from is None else []:
        start = time.perf_counter()
        gps[seed] = run_gps(config, seed, args.iterations, args.eval_episodes)
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s")
    baselines: dict[str, dict[int, list[tuple[int, float]]]] = {"SAC": {}, "PPO": {}}
    for seed in args.baseline_seeds:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            rows = train("sac", ENV, episodes=args.baseline_episodes, out=tmp, seed=seed, tier=args.tier,
                         record=False, progress=False)
        baselines["SAC"][seed] = [(int(r["env_steps"]), float(r["return"])) for r in rows]
        print(f"SAC seed {seed}: {[round(r) for _, r in baselines['SAC'][seed]]} ({time.perf_counter() - start:.0f} s)")
        start = time.perf_counter()
        baselines["PPO"][seed] = run_ppo(seed, args.baseline_episodes)
        print(f"PPO seed {seed}: {[round(r) for _, r in baselines['PPO'][seed]]} ({time.perf_counter() - start:.0f} s)")

    print("\nSummary (GPS: the policy's mean alone, from the training start distribution):")
    for seed, rows in gps.items():
        last = rows[-1]
        print(f"  seed {seed}: final eval return {last['eval_return']:.1f}, upright {last['upright']:.2f} "
              f"after {last['env_steps']} env steps; best {max(r['eval_return'] for r in rows):.1f}")
    print(f"total wall {time.perf_counter() - begin:.0f} s")
    results = RESULTS_JSON
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"gps": gps, "baselines": baselines}, indent=1))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for seed, rows in gps.items():
        ax.plot([r["env_steps"] for r in rows], [r["eval_return"] for r in rows], "o-", color="C0", alpha=0.8,
                label="GPS (policy alone, true-dynamics iLQR)" if seed == args.seeds[0] else None)
    for colour, (name, runs) in zip(("C1", "C2"), baselines.items()):
        for i, curve in enumerate(runs.values()):
            ax.plot(*zip(*curve), "s--", color=colour, alpha=0.8, label=f"{name} from scratch" if i == 0 else None)
    ax.set_xlabel("real env steps")
    ax.set_ylabel("return (200 steps)")
    ax.set_title("Pendulum-v1: GPS vs PPO and SAC from scratch")
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
