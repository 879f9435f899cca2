"""PlaNet and Dreamer from pixels (issue 15): learning curves against the random policy, and state-based PETS.

For each algorithm of ``--algos`` and seed of ``--seeds``, a run on disk exactly as
``mbrl-course train <algo> --env <env> --pixels`` makes it (:func:`mbrl_course.runs.train`, the compute tier's
config), for ``--episodes`` episodes (default: the tier's); then ``--eval-episodes`` evaluation episodes of the
trained agent without exploration noise (:func:`mbrl_course.runs.evaluate`); ``--random-episodes`` episodes of the
uniform random policy on the same env give the baseline. Printed per run: the evaluation return (mean ± standard
error), its distance to the random policy's mean in standard errors of the difference,
z = (mean − mean_random) / √(SE² + SE_random²) (the issue's default-tier target: z ≥ 5), env steps and wall time.

``--pets`` also runs the project's state-based PETS on the same env for the same number of env steps (the full
tier's target: PlaNet and Dreamer each ≥ 80 % of PETS's return, seeds 0–2). ``--throughput`` measures Dreamer's
env steps and gradient steps per second on ``--device`` (the issue's GPU figure, next to the anchor's 12 env
steps/s of the PyTorch DreamerV3 port on an RTX 3080 Ti: another task, another model size; say so when quoting).

Writes ``benchmarks/out/pixels/<env>_<tier>/…`` (the runs) and ``summary.json``; with ``--figure``
``benchmarks/figures/pixels_<env>_<tier>.png`` (return vs env steps per run, the random policy's mean ± 2 SE).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/pixels.py --tier default --algos planet,dreamer \\
        --seeds 0 [--env Pendulum-v1] [--episodes N] [--eval-episodes 20] [--random-episodes 30] [--figure] [--pets] [--throughput]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from mbrl_course.budget import TIERS, by_budget  # noqa: E402
from mbrl_course.envs import make_pixel_env  # noqa: E402
from mbrl_course.runs import evaluate, train  # noqa: E402
from mbrl_course.viz.planet_dreamer import random_policy_returns  # noqa: E402

ROOT = Path(__file__).resolve().parent


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample std / √n; 0 for one value)."""
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def save_curves(summary: dict, tag: str, command: str) -> None:
    """The curves lecture 9 draws, small: ``mbrl_course/viz/data/pixels_<tag>.json`` (returns rounded to 0.1)."""
    runs = {name: {"rows": [{"episode": int(r["episode"]), "return": round(r["return"], 1),
                             "env_steps": int(r["env_steps"]), "wall_s": round(r["wall_s"], 1)} for r in run["rows"]],
                   "eval_mean": round(run["mean"], 1), "eval_se": round(run["se"], 1), "z": round(run["z"], 2),
                   "wall_s": round(run["wall_s"], 1)}
            for name, run in summary["runs"].items()}
    data = {"command": command, "measured": time.strftime("%Y-%m-%d"), "torch_threads": summary["torch_threads"],
            "random": {"mean": round(summary["random"]["mean"], 1), "se": round(summary["random"]["se"], 1),
                       "episodes": len(summary["random"]["returns"])}, "runs": runs}
    path = ROOT.parent / "mbrl_course" / "viz" / "data" / f"pixels_{tag}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
    print("curves:", path)


def dreamer_throughput(env_id: str, device: str, tier: str, env_steps: int = 500) -> dict[str, float]:
    """Dreamer's env steps per second (acting + learning, the loop as it runs) and world-model + actor-critic
    gradient steps per second, after a warm-up, on ``device``."""
    from mbrl_course.agents.dreamer import DreamerConfig, make_dreamer
    from mbrl_course.agents.dyna import dyna_loop
    from mbrl_course.agents.latent import pixel_buffer

    config = DreamerConfig.for_budget(tier)
    env = make_pixel_env(env_id, seed=0)
    agent = make_dreamer(env, env_id, config, device=device, seed=0)
    buffer = pixel_buffer(env, config.buffer_capacity, device)
    dyna_loop(env, agent, buffer, episodes=1000, seed_steps=config.seed_steps,
              max_env_steps=config.seed_steps + 50)                                     # seed + warm-up
    learner = agent.learner
    start_steps, start_calls = agent.env_steps, learner.calls
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    dyna_loop(env, agent, buffer, episodes=1000, seed_steps=0, max_env_steps=agent.env_steps + env_steps)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    updates = (learner.calls - start_calls) // learner.train_every
    start = time.perf_counter()
    for _ in range(20):
        learner.calls = learner.train_every - 1
        learner.policy_update(None, buffer)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    grad_seconds = (time.perf_counter() - start) / 20
    env.close()
    return {"env_steps_per_s": (agent.env_steps - start_steps) / seconds, "updates_in_loop": updates,
            "gradient_steps_per_s": 1.0 / grad_seconds, "train_every": learner.train_every,
            "batch": config.train.batch_size, "chunk": config.train.chunk_length,
            "horizon": config.actor_critic.horizon}


def train_for(algo: str, env_id: str, *, episodes: int, out: Path, seed: int, device: str, tier: str,
              pixels: bool, seconds: float | None = None) -> list[dict]:
    """:func:`mbrl_course.runs.train` for ``episodes`` episodes, or until ``seconds`` have passed: then the run
    stops as after a Ctrl-C (the checkpoint of the last finished episode is kept) and its rows are returned."""
    kwargs = dict(episodes=episodes, out=out, seed=seed, device=device, tier=tier, record=False, progress=True,
                  pixels=pixels)
    if seconds is None:
        return train(algo, env_id, **kwargs)

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return train(algo, env_id, **kwargs)
    except KeyboardInterrupt:
        ckpt = torch.load(out / "checkpoint.pt", weights_only=False, map_location="cpu")
        print(f"{algo} seed {seed}: time budget of {seconds:.0f} s spent after {len(ckpt['returns'])} episodes",
              flush=True)
        return list(ckpt["returns"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tier", choices=TIERS, default="default")
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--algos", default="planet,dreamer")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per run (default: the tier's)")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--random-episodes", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--figure", action="store_true")
    parser.add_argument("--save-curves", action="store_true",
                        help="also write the curves for lecture 9 to mbrl_course/viz/data/pixels_<env>_<tier>.json")
    parser.add_argument("--pets", action="store_true", help="also state-based PETS for the same env steps")
    parser.add_argument("--throughput", action="store_true", help="Dreamer's env and gradient steps per second")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="stop each run's training after this many seconds (at the last finished episode, "
                             "as a Ctrl-C would), then evaluate it; --episodes is then the most it may reach")
    parser.add_argument("--summary", default="summary.json",
                        help="file name of the summary in the output folder (runs in parallel need their own)")
    args = parser.parse_args()
    if args.time_budget is not None and args.time_budget <= 0:
        parser.error(f"--time-budget: expected a positive number of seconds, got {args.time_budget}")
    if args.device == "cpu":
        torch.set_num_threads(1)
    tag = f"{args.env.split('/')[-1]}_{args.tier}"
    out = ROOT / "out" / "pixels" / tag
    out.mkdir(parents=True, exist_ok=True)
    episodes = args.episodes or by_budget(smoke=2, default=20, full=500, tier=args.tier)
    summary: dict = {"env": args.env, "tier": args.tier, "episodes": episodes, "device": args.device,
                     "torch_threads": torch.get_num_threads(), "runs": {}}

    baseline = random_policy_returns(args.env, args.random_episodes, seed=10_000).tolist()  # evaluate's seeds
    rand_mean, rand_se = mean_se(baseline)
    summary["random"] = {"returns": baseline, "mean": rand_mean, "se": rand_se}
    print(f"random policy: {rand_mean:.1f} ± {rand_se:.1f} (SE, {len(baseline)} episodes)", flush=True)

    algos = [a for a in args.algos.split(",") if a]
    if args.pets:
        algos.append("pets")
    for algo in algos:
        for seed in (int(s) for s in args.seeds.split(",")):
            run_dir = out / f"{algo}_s{seed}"
            shutil.rmtree(run_dir, ignore_errors=True)
            start = time.perf_counter()
            # PETS on the state, for as many episodes (of the same length) as the pixel agents
            rows = train_for(algo, args.env, episodes=episodes, out=run_dir, seed=seed, device=args.device,
                             tier=args.tier, pixels=algo != "pets", seconds=args.time_budget)
            wall = time.perf_counter() - start
            evals = evaluate(run_dir, episodes=args.eval_episodes, device=args.device, progress=False)
            mean, se = mean_se(evals)
            z = (mean - rand_mean) / math.sqrt(se ** 2 + rand_se ** 2) if se + rand_se > 0 else float("nan")
            summary["runs"][f"{algo}_s{seed}"] = {"rows": rows, "eval": evals, "mean": mean, "se": se, "z": z,
                                                 "wall_s": wall, "env_steps": rows[-1]["env_steps"]}   # agent steps
            print(f"{algo:8s} seed {seed}: eval {mean:8.1f} ± {se:6.1f}  z = {z:5.1f}  "
                  f"env steps {rows[-1]['env_steps']:6.0f}  wall {wall:7.1f} s", flush=True)

    if args.throughput:
        summary["throughput"] = dreamer_throughput(args.env, args.device, args.tier)
        print("Dreamer throughput:", summary["throughput"], flush=True)
        if args.device.startswith("cuda"):
            summary["throughput"]["gpu"] = torch.cuda.get_device_name()

    (out / args.summary).write_text(json.dumps(summary, indent=1))
    if args.save_curves:
        save_curves(summary, tag, " ".join(["benchmarks/pixels.py", *sys.argv[1:]]))
    print(f"\n{'run':14s} {'eval return':>16s} {'z vs random':>12s} {'env steps':>10s} {'wall s':>8s}")
    for name, r in summary["runs"].items():
        print(f"{name:14s} {r['mean']:8.1f} ± {r['se']:5.1f} {r['z']:12.1f} {r['env_steps']:10.0f} {r['wall_s']:8.1f}")
    if args.pets:
        for algo in algos[:-1]:
            for seed in args.seeds.split(","):
                pets = summary["runs"][f"pets_s{seed}"]["mean"]
                mine = summary["runs"][f"{algo}_s{seed}"]["mean"]
                # returns can be negative (Pendulum): compare the gains over the random policy
                ratio = (mine - rand_mean) / (pets - rand_mean) if pets != rand_mean else float("nan")
                print(f"{algo} seed {seed}: (return − random) / (PETS − random) = {ratio:.2f}")

    if args.figure:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, r in summary["runs"].items():
            steps = [row["env_steps"] for row in r["rows"]]
            ax.plot(steps, [row["return"] for row in r["rows"]], label=name, lw=1.2)
        xmax = max(r["env_steps"] for r in summary["runs"].values())
        ax.axhspan(rand_mean - 2 * rand_se, rand_mean + 2 * rand_se, color="0.8", label="random ± 2 SE")
        ax.axhline(rand_mean, color="0.4", lw=0.8)
        ax.set(xlabel="agent steps (each repeats its action R times in the env)", ylabel="episode return",
               title=f"from 64×64 pixels: {args.env}, {args.tier} tier", xlim=(0, xmax))
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = ROOT / "figures" / f"pixels_{tag}.png"
        fig.savefig(path, dpi=110)
        print("figure:", path)


if __name__ == "__main__":
    main()
