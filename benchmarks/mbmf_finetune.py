"""MBMF's hand-over: does the fine-tuned policy keep the MPC controller's return, and then pass it?

For each seed: ``mbrl_course.agents.train("mbmf-ft", ENV, episodes=N)`` in the ``default`` tier: the
MBMF MPC controller (delta network + random shooting) for ``mpc_episodes`` episodes, DAgger for
``dagger_iterations`` episodes, then PPO on the real env. From ``returns.csv`` it prints the mean
return of each phase:

- MPC: the MPC controller's episodes after the random seed episode;
- cloned: the DAgger episodes (the cloned policy's mean action, relabelled by the expert);
- PPO early / PPO late: the first and the last ``--window`` PPO episodes (stochastic policy);

and the two claims: the policy keeps the MPC's return (cloned and PPO early ≥ MPC − ``--tolerance``),
and PPO passes it (PPO late > MPC).

    .venv/bin/python benchmarks/mbmf_finetune.py --seeds 0 1 2 --episodes 300
    .venv/bin/python benchmarks/mbmf_finetune.py --quick          # end-to-end check, about a minute

Writes the learning curves to ``--out``/mbmf_finetune.png.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from mbrl_course.agents import MBMFFTConfig, train
from mbrl_course.viz import plot_learning_curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=300, help="all three phases together")
    parser.add_argument("--window", type=int, default=20, help="PPO episodes averaged at the start and the end")
    parser.add_argument("--tolerance", type=float, default=100.0, help="how much return 'keeping' may lose")
    parser.add_argument("--tier", default="default", choices=("smoke", "default", "full"))
    parser.add_argument("--quick", action="store_true", help="smoke tier, seed 0, 12 episodes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/mbmf_finetune"))
    args = parser.parse_args()
    if args.quick:
        args.tier, args.seeds, args.episodes, args.window = "smoke", [0], 12, 3
    config = MBMFFTConfig.for_budget(args.tier)
    first_ppo = config.mpc_episodes + config.dagger_iterations
    if args.episodes < first_ppo + 2 * args.window:
        parser.error(f"--episodes: expected at least {first_ppo + 2 * args.window} "
                     f"({first_ppo} MPC and DAgger episodes, then 2 × --window PPO episodes)")
    print(f"config ({args.tier}): {config}", flush=True)
    runs, keeps, passes = {}, [], []
    for seed in args.seeds:
        start = time.perf_counter()
        rows = train("mbmf-ft", args.env, episodes=args.episodes, out=args.out / f"seed{seed}", seed=seed,
                     tier=args.tier, overwrite=True, record=False, progress=False)
        wall = time.perf_counter() - start
        returns = [r["return"] for r in rows]
        mpc = statistics.mean(returns[config.seed_episodes:config.mpc_episodes])
        cloned = statistics.mean(returns[config.mpc_episodes:first_ppo]) if config.dagger_iterations else float("nan")
        early = statistics.mean(returns[first_ppo:first_ppo + args.window])
        late = statistics.mean(returns[-args.window:])
        keep = cloned >= mpc - args.tolerance and early >= mpc - args.tolerance
        keeps.append(keep)
        passes.append(late > mpc)
        runs[f"seed {seed}"] = rows
        print(f"seed {seed}: MPC {mpc:.1f} | cloned {cloned:.1f} | PPO early {early:.1f} | PPO late {late:.1f} | "
              f"keeps: {keep} | passes: {late > mpc} | {len(rows)} episodes, {rows[-1]['env_steps']:.0f} env steps, "
              f"wall {wall / 60:.1f} min", flush=True)
    plot_learning_curves(runs, args.out / "mbmf_finetune.png", seed_episodes=config.seed_episodes,
                         title=f"MBMF: MPC -> DAgger -> PPO on {args.env}")
    print(f"keeps the MPC's return on every seed: {all(keeps)}; passes it on every seed: {all(passes)}")


if __name__ == "__main__":
    main()
