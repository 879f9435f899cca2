"""Trials to solve the cart-pole swing-up: PILCO, Deep PILCO and PETS on the same budget of interaction.

Each run is ``mbrl_course.runs.train(algo, "mbrl_course/CartPoleSwingUp-v0", episodes=TRIALS)`` with 4 s
trials (40 steps of 0.1 s from the standard start s₀ ~ N((0, 0, π, 0), 0.1² I), PILCO's setting); the first
trial acts at random. **Solved** at trial k: in trial k the pole tip stays within 0.1 m of its upright
target for the whole last second (the last 10 steps). The env's reward is r = exp(−d²/(2 · 0.25²)) for the
tip's distance d, so "d < 0.1 m" is "r > exp(−0.08)", read from D_real.

    .venv/bin/python benchmarks/pilco_cartpole.py [--algos pilco deep-pilco pets] [--seeds 0 1 2]
        [--trials 10] [--tier full] [--out benchmarks/out/pilco_cartpole] [--threads N]
        [--set pilco:policy_iterations=50 ...]
    .venv/bin/python benchmarks/pilco_cartpole.py --merge RUN1/results.json RUN2/results.json --out DIR

Prints one row per run (first solved trial, wall time) and writes ``cost_per_trial.png`` (mean cost
1 − r per trial, one line per seed, one panel per algorithm) and ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from mbrl_course.runs import load_run, train

ENV = "mbrl_course/CartPoleSwingUp-v0"
STEPS = 40  # 4 s trials
LAST = 10  # the last second
SOLVED_REWARD = math.exp(-0.5 * 0.1**2 / 0.25**2)  # d < 0.1 m


def trial_rewards(run_dir: Path) -> torch.Tensor:
    """The real rewards of every trial of a run, (trials, STEPS), from its D_real."""
    _, _, buffer, _ = load_run(run_dir)
    rewards = buffer.all().reward.detach().cpu().double()
    return rewards.reshape(-1, STEPS)


def first_solved(rewards: torch.Tensor) -> int | None:
    """The first trial (1-based) whose last second keeps the tip within 0.1 m of upright, or None."""
    solved = (rewards[:, -LAST:] > SOLVED_REWARD).all(-1)
    hits = solved.nonzero()
    return int(hits[0]) + 1 if len(hits) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algos", nargs="+", default=["pilco", "deep-pilco", "pets"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--tier", default="full", choices=("smoke", "default", "full"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/pilco_cartpole"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--set", action="append", default=[], metavar="ALGO:KEY=VALUE",
                        help="a config setting of one algorithm, e.g. pilco:policy_iterations=50; repeatable")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="RESULTS_JSON",
                        help="train nothing: draw one figure (and table) from the results.json of runs made side by "
                             "side, into --out")
    args = parser.parse_args()
    if args.merge:
        results = [row for path in args.merge for row in json.loads(path.read_text())]
        for r in results:
            print(f"{r['algo']:>10} seed {r['seed']}: solved at trial {r['solved_at'] or '-'} (of {len(r['cost'])}), "
                  f"wall {r['wall_s']:.0f} s")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        plot(results, args.out / "cost_per_trial.png")
        print(f"figure: {args.out / 'cost_per_trial.png'}")
        return
    overrides: dict[str, dict[str, str]] = {}
    for item in args.set:
        algo, _, setting = item.partition(":")
        key, sep, value = setting.partition("=")
        if not (algo and key and sep):
            parser.error(f"--set: expected ALGO:KEY=VALUE, got {item!r}")
        overrides.setdefault(algo, {})[key] = value
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{ENV}, {args.trials} trials of {STEPS} steps, tier {args.tier}, torch threads {torch.get_num_threads()}")
    results = []
    for algo in args.algos:
        for seed in args.seeds:
            run_dir = args.out / f"{algo}-seed{seed}"
            start = time.perf_counter()
            train(algo, ENV, episodes=args.trials, out=run_dir, seed=seed, tier=args.tier, overwrite=True,
                  record=False, progress=False, env_kwargs={"max_episode_steps": STEPS},
                  overrides=overrides.get(algo))
            wall = time.perf_counter() - start
            rewards = trial_rewards(run_dir)
            solved = first_solved(rewards)
            cost = (1.0 - rewards).mean(-1).tolist()
            results.append({"algo": algo, "seed": seed, "solved_at": solved, "wall_s": wall, "cost": cost})
            print(f"{algo:>10} seed {seed}: solved at trial {solved if solved else '-'} "
                  f"(of {len(cost)}), wall {wall:.0f} s, cost per trial {' '.join(f'{c:.2f}' for c in cost)}",
                  flush=True)
            (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "cost_per_trial.png")
    print(f"figure: {args.out / 'cost_per_trial.png'}")


def plot(results: list[dict], path: Path) -> None:
    """Mean cost per trial, one panel per algorithm, one line per seed; a marker at the first solved trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algos = list(dict.fromkeys(r["algo"] for r in results))
    fig, axes = plt.subplots(1, len(algos), figsize=(max(6.4, 4.2 * len(algos)), 3.6), sharey=True, squeeze=False)
    for ax, algo in zip(axes[0], algos):
        for r in (r for r in results if r["algo"] == algo):
            trials = range(1, len(r["cost"]) + 1)
            (line,) = ax.plot(trials, r["cost"], marker="o", ms=3, label=f"seed {r['seed']}")
            if r["solved_at"]:
                ax.axvline(r["solved_at"], color=line.get_color(), ls=":", lw=1)
        ax.set_title(algo)
        ax.set_xlabel("trial (1: random)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("mean cost 1 − r per trial")
    axes[0][-1].legend()
    fig.suptitle("Cart-pole swing-up, 4 s trials (dotted: first solved trial)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
