"""MBMF's hand-over: does the fine-tuned policy keep the MPC controller's early return, and then pass it?

For each seed, one run of :func:`mbrl_course.agents.mbmf_ft_loop` (the Python API that
``mbrl-course train mbmf-ft`` drives) on PILCO's cart-pole swing-up (or ``--env``), in three phases,
all with the ``default`` tier's :class:`~mbrl_course.agents.MBMFFTConfig`:

1. MPC: MBMF's controller (delta network 2 × 256 + random shooting 1000 × 15) for
   ``--mpc-episodes`` (15) episodes, the first one random;
2. DAgger: ``--dagger`` (10) episodes driven by the cloned policy's mean action, each relabelled by the
   MPC expert, then behaviour cloning again;
3. PPO (8 episodes per update, 10 epochs of minibatches of 256, learning rate 3e-4, γ = 0.95,
   σ = e^−1.5 in normalised action units) on the real env from the cloned policy, for
   ``--ppo-episodes`` episodes.

Every controller is scored the same way: ``--eval-episodes`` episodes from the same start states
(reset seeds 10,000 + k), the policies by their mean action (the training episodes of PPO add
exploration noise and start from other states). The MPC controller is scored at the hand-over
(with the model it hands over), the cloned policy after DAgger, PPO every ``--eval-every`` of its
episodes. Printed, per seed and overall:

- keeps: the cloned policy's score ≥ the MPC's − ``--tolerance`` (the hand-over loses nothing
  beyond noise);
- passes: PPO's last ``--last`` scores average more than the MPC's.

    PYTHONPATH=. .venv/bin/python benchmarks/mbmf_finetune.py --seeds 0 1 2
    PYTHONPATH=. .venv/bin/python benchmarks/mbmf_finetune.py --seeds 0 1 2 --env Pendulum-v1
    PYTHONPATH=. .venv/bin/python benchmarks/mbmf_finetune.py --quick      # end-to-end check, under a minute

Writes ``--out``/mbmf_finetune.png (per seed: the scores and the training episodes' returns against
env steps, the MPC's score at hand-over dashed) and ``--out``/seed{N}.csv (the same rows).
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

from mbrl_course.agents import MBMFFTConfig
from mbrl_course.agents.mbmf_ft import make_mbmf_ft, mbmf_ft_loop, mbmf_ft_loop_kwargs
from mbrl_course.agents.mpc import run_episode
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env

ENV = "mbrl_course/CartPoleSwingUp-v0"
EVAL_SEED = 10_000
SMOOTH = 10  # training episodes averaged in the figure's faint lines


def score(env, actor, episodes: int) -> float:
    """Mean return of ``actor`` over ``episodes`` episodes from fixed start states."""
    return float(np.mean([run_episode(env, actor, None, episode=k, seed=EVAL_SEED).ret for k in range(episodes)]))


def run(config: MBMFFTConfig, seed: int, ppo_episodes: int, eval_every: int, eval_episodes: int, env_id: str):
    """One run; returns (rows, MPC score at hand-over, cloned score, wall seconds of training).

    ``rows`` hold the scores (``kind`` "score") and every training episode's return (``kind`` "episode"),
    each with its phase and the env steps so far.
    """
    torch.manual_seed(seed)
    env, eval_env = make_env(env_id), make_env(env_id)
    agent = make_mbmf_ft(env, env_id, config, seed=seed)
    buffer = ReplayBuffer(env.observation_space.shape[0], env.action_space.shape[0])
    first_ppo = config.mpc_episodes + config.dagger_iterations
    rows: list[dict] = []
    state = {"steps": 0, "eval_s": 0.0, "mpc": float("nan"), "cloned": float("nan")}
    start = time.perf_counter()

    def record(phase: str, actor, n: int) -> float:
        t0 = time.perf_counter()
        value = score(eval_env, actor, n)
        state["eval_s"] += time.perf_counter() - t0
        rows.append({"kind": "score", "phase": phase, "env_steps": state["steps"], "return": value,
                     "wall_s": time.perf_counter() - start - state["eval_s"]})
        print(f"  seed {seed}: {phase:6s} {state['steps']:6d} env steps, score {value:6.1f}", flush=True)
        return value

    def on_episode(result) -> None:
        state["steps"] += result.steps
        episode = result.episode
        phase = "MPC" if episode < config.mpc_episodes else "DAgger" if episode < first_ppo else "PPO"
        rows.append({"kind": "episode", "phase": phase, "env_steps": state["steps"], "return": result.ret,
                     "wall_s": time.perf_counter() - start - state["eval_s"]})
        if episode == config.mpc_episodes - 1:
            # the expert's model is final now (DAgger and PPO do not refit it): its score at hand-over
            state["mpc"] = record("MPC", agent.expert, 2 * eval_episodes)
        elif episode == first_ppo - 1:
            state["cloned"] = record("cloned", agent, eval_episodes)
        elif episode >= first_ppo and (episode - first_ppo + 1) % eval_every == 0:
            record("PPO", agent, eval_episodes)

    mbmf_ft_loop(env, agent, buffer, episodes=first_ppo + ppo_episodes, seed=seed, on_episode=on_episode,
                 **mbmf_ft_loop_kwargs(config))
    wall = time.perf_counter() - start - state["eval_s"]
    env.close()
    eval_env.close()
    return rows, state["mpc"], state["cloned"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default=ENV)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    default = MBMFFTConfig.for_budget("default")
    parser.add_argument("--mpc-episodes", type=int, default=default.mpc_episodes,
                        help="MPC episodes, the random one included (default: the default tier's)")
    parser.add_argument("--dagger", type=int, default=default.dagger_iterations,
                        help="DAgger iterations, one episode each (default: the default tier's)")
    parser.add_argument("--ppo-episodes", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=20, help="PPO episodes between scores")
    parser.add_argument("--eval-episodes", type=int, default=20, help="episodes per score (the MPC gets twice as many)")
    parser.add_argument("--last", type=int, default=5, help="PPO scores averaged for 'passes'")
    parser.add_argument("--tolerance", type=float, default=5.0, help="how much score 'keeps' may lose")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--quick", action="store_true", help="seed 0, 3 MPC, 1 DAgger and 20 PPO episodes")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/mbmf_finetune"))
    parser.add_argument("--replot", action="store_true", help="only redraw the figure from --out's seed CSVs")
    args = parser.parse_args()
    if args.replot:
        curves = {}
        for seed in args.seeds:
            with open(args.out / f"seed{seed}.csv") as fh:
                curves[seed] = [{**r, "env_steps": int(r["env_steps"]), "return": float(r["return"])}
                                for r in csv.DictReader(fh)]
        mpc = [next(r["return"] for r in rows if r["kind"] == "score") for rows in curves.values()]
        plot(curves, [(seed, m) for seed, m in zip(curves, mpc)], args.out / "mbmf_finetune.png", args.env)
        return
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.mpc_episodes, args.dagger, args.ppo_episodes = [0], 3, 1, 20
        args.eval_every, args.eval_episodes, args.last = 10, 3, 1
    config = replace(default, mpc_episodes=args.mpc_episodes, dagger_iterations=args.dagger)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"config: {config}\ntorch threads: {torch.get_num_threads()}", flush=True)

    curves, summary = {}, []
    for seed in args.seeds:
        rows, mpc, cloned, wall = run(config, seed, args.ppo_episodes, args.eval_every, args.eval_episodes, args.env)
        ppo = [r["return"] for r in rows if r["kind"] == "score" and r["phase"] == "PPO"]
        late = statistics.mean(ppo[-args.last:])
        keeps, passes = cloned >= mpc - args.tolerance, late > mpc
        summary.append((seed, mpc, cloned, ppo[0], late, keeps, passes, wall))
        curves[seed] = rows
        with open(args.out / f"seed{seed}.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["kind", "phase", "env_steps", "return", "wall_s"])
            writer.writeheader()
            writer.writerows(rows)
        print(f"seed {seed}: MPC {mpc:.1f} | cloned {cloned:.1f} | PPO first {ppo[0]:.1f} | PPO last {args.last} "
              f"{late:.1f} | keeps {keeps} | passes {passes} | training wall {wall / 60:.1f} min", flush=True)

    plot(curves, summary, args.out / "mbmf_finetune.png", args.env)
    print("\nseed     MPC  cloned  PPO first  PPO last   wall")
    for seed, mpc, cloned, first, late, _, _, wall in summary:
        print(f"{seed:4d}  {mpc:6.1f}  {cloned:6.1f}  {first:9.1f}  {late:8.1f}  {wall / 60:4.1f} m")
    if args.quick:
        print("(--quick: far too short for the claims below; this run checks the script)")
    print(f"the cloned policy keeps the MPC's score (within {args.tolerance}) on every seed: "
          f"{all(s[5] for s in summary)}")
    print(f"PPO passes the MPC's score on every seed: {all(s[6] for s in summary)}")


def plot(curves: dict[int, list[dict]], summary, path: Path, env_id: str) -> None:
    """Per seed: the training returns (faint, smoothed), the scores (markers), the MPC's hand-over score (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (seed, rows), row in zip(curves.items(), summary):
        episodes = [r for r in rows if r["kind"] == "episode"]
        scores = [r for r in rows if r["kind"] == "score"]
        line, = ax.plot([r["env_steps"] for r in scores], [r["return"] for r in scores], marker="o", markersize=3,
                        label=f"seed {seed}: score")
        color = line.get_color()
        smooth = np.convolve([r["return"] for r in episodes], np.ones(SMOOTH) / SMOOTH, mode="valid")
        ax.plot([r["env_steps"] for r in episodes][SMOOTH - 1:], smooth, color=color, alpha=0.35, linewidth=0.8)
        ax.axhline(row[1], color=color, linestyle="--", linewidth=0.8)
        for r in scores:
            if r["phase"] != "PPO":
                ax.annotate(r["phase"], (r["env_steps"], r["return"]), textcoords="offset points", xytext=(4, -10),
                            fontsize=7, color=color)
    # phases from the first seed's scores: the MPC's is taken at hand-over, the clone's when PPO starts
    marks = {r["phase"]: r["env_steps"] for r in next(iter(curves.values())) if r["kind"] == "score"}
    handover, first_ppo = marks["MPC"], marks["cloned"]
    ax.axvspan(0, handover, color="0.5", alpha=0.12, label="MPC phase")
    ax.axvspan(handover, first_ppo, color="tab:olive", alpha=0.2, label="DAgger phase (then PPO)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("return")
    ax.set_title(f"MBMF on {env_id}\nmarkers: scores (mean action, fixed starts); faint: training episodes "
                 f"(mean of {SMOOTH}); dashed: MPC at hand-over", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
