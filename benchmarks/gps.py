"""Guided policy search on Pendulum-v1: does the neural policy alone swing the pendulum up? And PPO, SAC from scratch.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gps.py [--seeds 0 1 2 | --seeds 0,1,2] [--iterations 12]
        [--tier default] [--eval-episodes 5] [--baseline-episodes 10] [--baseline-seeds 0]
        [--set learner.KEY=VALUE ...] [--save-curves [PATH]]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gps.py --merge-curves A.json B.json ... [--save-curves [PATH]]

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

``--save-curves`` also writes, for lecture 5 (``mbrl_course.viz.ilqr.gps_benchmark_curves``), the file
``mbrl_course/viz/data/gps_Pendulum-v1.json`` (or PATH): per seed and per update k = 1 … ``--iterations``
(:func:`gps_update_record`)

- ``eval_return`` ± ``eval_se``: the policy's mean alone in the real env (mean ± standard error over the
  ``--eval-episodes`` episodes, also listed in ``eval_returns``), and ``upright``, the fraction swung up;
  the row of update 0 is the fresh policy, before any update;
- ``plan_return``: the guiding controllers' return, Σ_{t<T} g of iLQR's guiding trajectories x̄^j on f (T = 80
  steps, mean over the C start states of that update); ``policy_return``: the same sum for the updated policy's
  mean rollout from the same C start states on f (so the two compare like for like); ``sample_return``: the
  mean return of that update's m samples per start state (guiding and on-policy);
- ``distance``: d = mean_{j,t} |wrap(θ_t^μ,j − θ̄_t^j)| (radians, wrap into (−π, π]; t = 0 … T), how far the
  updated policy's mean rollout is from the guiding trajectory it was trained on
  (:func:`mbrl_course.viz.ilqr.gps_distance`); chosen over a squared distance in (cos θ, sin θ, θ̇) because it
  reads in radians and θ̇'s scale does not swamp it;
- ``log_likelihood``: (1 / Σ alive) Σ_{j, i ≤ m_g, t} log μ_θ(u_t^i | x_t^i) of the guiding samples' actions under
  the updated policy (nats per step). A secondary measure: it depends on μ_θ's σ as much as on its mean, and
  once σ is narrower than the guiding samples' spread (s · Q_uu⁻¹ is wide on the pendulum) it falls while the
  rollouts converge (in the shipped run it fell on every seed), which is why d is the measure the lecture draws;
- ``ess``: 1 / Σ_i w̄_i,T² of that update's samples under the updated θ, mean over the start states (of m);
  ``ess_train``: the learner's own figure (Φ's last step, over the kept sample sets);

and at the first, middle and last update ``snapshots``: θ(t) (unwrapped, every 2nd step, 3 decimals) of the
guiding trajectory, the policy's mean rollout, the first 4 guiding samples and the first 2 policy samples, with
each sample's weight w̄_i,T, for the first 3 start states.

``--merge-curves A.json B.json …`` joins the seeds of several such files (runs of one seed each, e.g. side by side
on several cores) into one (PATH, or the default), after checking that they share the setting; the joined file's
``command`` lists the runs' commands. It trains nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mbrl_course.agents import PolicyRecorder, run_episode  # noqa: E402
from mbrl_course.agents.gps import GPSConfig, GPSLearner, make_gps, policy_log_prob  # noqa: E402
from mbrl_course.data import ReplayBuffer  # noqa: E402
from mbrl_course.envs import make_env  # noqa: E402
from mbrl_course.rl import PPO, PPOConfig  # noqa: E402
from mbrl_course.runs import train  # noqa: E402
from mbrl_course.runs.settings import apply_overrides  # noqa: E402
from mbrl_course.viz.ilqr import describe_gps_update, gps_distance, pendulum_angle  # noqa: E402

ENV = "Pendulum-v1"
FIGURE = Path("benchmarks/figures/gps_pendulum.png")
RESULTS_JSON = Path("benchmarks/out/gps_pendulum.json")
CURVES = Path("mbrl_course/viz/data/gps_Pendulum-v1.json")
UPRIGHT, LAST = 0.5, 50
SNAPSHOT_STARTS, SNAPSHOT_GUIDED, SNAPSHOT_POLICY, SNAPSHOT_EVERY = 3, 4, 2, 2


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0"`` -> [0, 1, 2] or [0] (``--seeds 0 1 2`` and ``--seeds 0,1,2`` both work)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds: expected integers like 0 1 2 or 0,1,2, got {text!r}") from None


def evaluate(env, learner, episodes: int, seed: int) -> tuple[list[float], float]:
    """Returns of μ_θ's mean over ``episodes`` fresh starts, and the fraction that stay upright at the end."""
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
    return returns, float(np.mean(upright))


def _eval_row(returns: list[float], upright: float) -> dict:
    se = statistics.stdev(returns) / math.sqrt(len(returns)) if len(returns) > 1 else float("nan")
    return dict(eval_return=statistics.mean(returns), eval_se=se, eval_returns=returns, upright=upright)


def gps_update_record(learner: GPSLearner, model) -> tuple[dict, dict]:
    """What the last policy update did (see the module docstring): the per-update numbers, and the θ(t) of the
    first start states' guiding trajectory, policy rollout and samples (a snapshot the caller keeps or drops)."""
    update = describe_gps_update(learner, model)
    samples = learner.last_samples
    guided = samples.guided
    with torch.no_grad():
        step = policy_log_prob(learner.policy, samples.obs[:, :guided, :-1], samples.action[:, :guided])
        alive = samples.alive[:, :guided].to(step.dtype)
        log_likelihood = float((step * alive).sum() / alive.sum())
    numbers = dict(plan_return=float(update.plan_return.mean()), policy_return=float(update.policy_return.mean()),
                   sample_return=float(samples.reward.sum(-1).mean()),
                   distance=float(gps_distance(update).mean()), log_likelihood=log_likelihood,
                   ess=float(update.effective_samples.mean()), samples=int(samples.obs.shape[1]))
    starts = min(SNAPSHOT_STARTS, update.plan_states.shape[0])
    keep = list(range(min(SNAPSHOT_GUIDED, guided))) + \
        list(range(guided, min(guided + SNAPSHOT_POLICY, samples.obs.shape[1])))

    def theta(states) -> list:
        return np.round(pendulum_angle(states)[..., ::SNAPSHOT_EVERY], 3).tolist()

    snapshot = dict(step_every=SNAPSHOT_EVERY, guided_shown=min(SNAPSHOT_GUIDED, guided),
                    plan=theta(update.plan_states[:starts]), policy=theta(update.policy_states[:starts]),
                    samples=theta(update.sample_states[:starts, keep]),
                    final_weights=np.round(update.weights[:starts, keep, -1].cpu().numpy(), 4).tolist(),
                    plan_return=np.round(update.plan_return[:starts].cpu().numpy(), 2).tolist(),
                    policy_return=np.round(update.policy_return[:starts].cpu().numpy(), 2).tolist(),
                    distance=np.round(gps_distance(update)[:starts], 4).tolist())
    return numbers, snapshot


def run_gps(config: GPSConfig, seed: int, iterations: int, eval_episodes: int) -> tuple[list[dict], list[dict]]:
    """``iterations`` real episodes of the Dyna loop with GPS, each followed by its policy update and an evaluation.

    Returns one row per update (row 0: the fresh policy) and the snapshots of the first, middle and last update.
    """
    env, eval_env = make_env(ENV), make_env(ENV)
    agent = make_gps(env, ENV, config, seed=seed)
    buffer = ReplayBuffer(3, 1)
    rows = [dict(update=0, env_steps=0, **_eval_row(*evaluate(eval_env, agent.learner, eval_episodes, seed)))]
    print(f"  seed {seed} update 0: eval {rows[-1]['eval_return']:.1f} upright {rows[-1]['upright']:.2f}")
    shown = sorted({1, (iterations + 1) // 2, iterations})
    snapshots = []
    for episode in range(iterations):
        start = time.perf_counter()
        result = run_episode(env, agent, buffer, episode=episode, seed=seed)
        agent.env_steps += result.steps
        info = agent.learner.policy_update(agent.model, buffer)
        numbers, snapshot = gps_update_record(agent.learner, agent.model)
        if episode + 1 in shown:
            snapshots.append(dict(update=episode + 1, **snapshot))
        evaluation = _eval_row(*evaluate(eval_env, agent.learner, eval_episodes, seed))
        rows.append(dict(update=episode + 1, env_steps=agent.env_steps, train_return=result.ret, **evaluation,
                         wall_s=time.perf_counter() - start, **{**info, **numbers, "ess_train": info["ess"]}))
        row = rows[-1]
        print(f"  seed {seed} update {episode + 1}: plan {row['plan_return']:.1f} policy (same starts) "
              f"{row['policy_return']:.1f} samples {row['sample_return']:.1f} distance {row['distance']:.3f} rad "
              f"loglik {row['log_likelihood']:.2f} ESS {row['ess']:.2f} (train {row['ess_train']:.2f}) "
              f"eval {row['eval_return']:.1f} ± {row['eval_se']:.1f} upright {row['upright']:.2f} "
              f"({row['wall_s']:.1f} s)", flush=True)
    return rows, snapshots


def save_curves(path: Path, command: str, config: GPSConfig, args, gps: dict, snapshots: dict, walls: dict) -> None:
    """The lecture's file (module docstring): per seed the per-update rows (rounded) and the snapshots."""
    keys = ("update", "env_steps", "eval_return", "eval_se", "eval_returns", "upright", "plan_return",
            "policy_return", "sample_return", "distance", "log_likelihood", "ess", "ess_train", "samples", "wall_s")

    def rounded(row: dict) -> dict:
        return {k: round(row[k], 4) if isinstance(row[k], float) else
                [round(r, 2) for r in row[k]] if k == "eval_returns" else row[k] for k in keys if k in row}

    learner = config.learner
    data = dict(
        command=command, measured=time.strftime("%Y-%m-%d", time.gmtime()), env=ENV, tier=args.tier,
        iterations=args.iterations, eval_episodes=args.eval_episodes,
        setting=dict(model=config.model, conditions=learner.conditions, horizon=learner.horizon,
                     guided_samples=learner.guided_samples, policy_samples=learner.policy_samples,
                     covariance_scale=learner.covariance_scale, regularizer=learner.regularizer,
                     policy_steps=learner.policy_steps, keep_updates=learner.keep_updates,
                     ilqr_iterations=learner.ilqr.iterations),
        upright_rule=f"|θ| < {UPRIGHT} rad over the last {LAST} of 200 steps",
        seeds={str(seed): dict(rows=[rounded(r) for r in rows], snapshots=snapshots[seed],
                               wall_s=round(walls[seed], 1))
               for seed, rows in gps.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KB)")


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


def merge_curves(paths: list[Path], out: Path) -> None:
    """Join the seeds of ``--save-curves`` files of one setting into ``out`` (see the module docstring)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    same = ("env", "tier", "iterations", "eval_episodes", "setting", "upright_rule")
    for path, part in zip(paths, parts, strict=True):
        differ = [k for k in same if part.get(k) != parts[0].get(k)]
        if differ:
            raise SystemExit(f"--merge-curves: {path} differs from {paths[0]} in {differ}; only runs of one setting join")
    seeds = [seed for part in parts for seed in part["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--merge-curves: a seed appears twice among {seeds}")
    data = {**parts[0], "command": " ; ".join(part["command"] for part in parts) + " ; then benchmarks/gps.py "
            "--merge-curves (the seeds' runs side by side, one process each)",
            "measured": max(part["measured"] for part in parts),
            "seeds": {seed: run for part in parts for seed, run in sorted(part["seeds"].items())}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    print(f"wrote {out} (seeds {list(data['seeds'])}, {out.stat().st_size / 1024:.0f} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=parse_seeds, nargs="+", default=[[0, 1, 2]])
    parser.add_argument("--iterations", type=int, default=12, help="GPS updates (= real episodes) per seed")
    parser.add_argument("--tier", default="default", choices=("smoke", "default", "full"))
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--baseline-episodes", type=int, default=10)
    parser.add_argument("--baseline-seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a GPSConfig setting")
    parser.add_argument("--out", type=Path, default=FIGURE)
    parser.add_argument("--gps-from", type=Path, default=None,
                        help="plot the GPS curves of an earlier run's JSON instead of training GPS again")
    parser.add_argument("--save-curves", type=Path, nargs="?", const=CURVES, default=None, metavar="PATH",
                        help=f"write the per-update curves and snapshots lecture 5 draws (default path {CURVES})")
    parser.add_argument("--merge-curves", type=Path, nargs="+", default=None, metavar="JSON",
                        help="join the seeds of several --save-curves files into one (trains nothing)")
    args = parser.parse_args()
    args.seeds = [seed for group in args.seeds for seed in group]
    if args.merge_curves is not None:
        merge_curves(args.merge_curves, args.save_curves or CURVES)
        return
    if args.save_curves is not None and args.gps_from is not None:
        parser.error("--save-curves records a GPS run: it cannot be combined with --gps-from")
    command = "OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python " + " ".join(["benchmarks/gps.py", *sys.argv[1:]])
    torch.set_num_threads(1)
    config = apply_overrides(GPSConfig.for_budget(args.tier), dict(s.split("=", 1) for s in args.set), owner="gps")
    print(f"GPS config ({args.tier}): {config}")
    begin = time.perf_counter()
    gps, snapshots, walls = {}, {}, {}
    if args.gps_from is not None:
        gps = {int(seed): rows for seed, rows in json.loads(args.gps_from.read_text())["gps"].items()}
        args.seeds = list(gps)
    for seed in args.seeds if args.gps_from is None else []:
        start = time.perf_counter()
        gps[seed], snapshots[seed] = run_gps(config, seed, args.iterations, args.eval_episodes)
        walls[seed] = time.perf_counter() - start
        print(f"seed {seed}: {walls[seed]:.0f} s")
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
        print(f"  seed {seed}: final eval return {last['eval_return']:.1f}"
              + (f" ± {last['eval_se']:.1f}" if "eval_se" in last else "")
              + f", upright {last['upright']:.2f} after {last['env_steps']} env steps; "
              f"best {max(r['eval_return'] for r in rows):.1f}"
              + (f"; distance {rows[1]['distance']:.3f} rad at update 1, {last['distance']:.3f} at the last"
                 if "distance" in last else ""))
    print(f"total wall {time.perf_counter() - begin:.0f} s")
    if args.save_curves is not None:
        save_curves(args.save_curves, command, config, args, gps, snapshots, walls)
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
