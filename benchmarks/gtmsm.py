"""GTM-SM on the generated 2-D world: predicted crops at places revisited after ≥ 100 steps away.

Training (:func:`mbrl_course.ssm.gtmsm.train_gtmsm`): one trajectory per generated world (seed 0), the agent
wandering in a 24-pixel home box; the first τ steps are the context, the rest the target. Two models with the
same networks, data, seed and Adam steps: GTM-SM (the KNN memory) and the ablation ``memory=False``
(p(z_t | s_t) from the position alone).

Evaluation (:func:`revisit_error`, held-out worlds, seed 1): :func:`mbrl_course.ssm.worlds.revisit_trajectories`
with τ = 64 context steps at home, 110 steps away (to the opposite corner), 64 steps back home. Each model sees
the context frames and actions and predicts every later crop from the actions alone. Scores, per-pixel MSE in
[0, 1] units:

- ``revisit``: return-phase steps whose true position is within 4 px of a context position (a revisited place,
  ≥ 110 steps after the context);
- ``return``: all return-phase steps; ``away``: the away phase (places not in the context: no model can know).

Baselines: the training set's mean frame, the context's mean frame, and (a reference, not a model) the context
frame seen nearest to the true position. Another model (the RSSM) plugs into :func:`revisit_error` as any
``predict_fn(context_frames, context_actions, future_actions) -> (B, T, 3, 32, 32)`` floats in [0, 1].

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/gtmsm.py --tier default [--figures] [--steps N]

Writes ``benchmarks/out/gtmsm/results_<tier>.json`` (``results_<tier>_steps<N>.json`` with ``--steps``) and, with ``--figures``,
``benchmarks/figures/gtmsm_revisit.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mbrl_course.budget import by_budget
from mbrl_course.ssm.gtmsm import GTMSM, GTMSMConfig, GTMSMTrainConfig, train_gtmsm
from mbrl_course.ssm.worlds import Trajectories, World, explore, home_boxes, make_world, revisit_trajectories

ROOT = Path(__file__).resolve().parent
HOME = 24.0
CONTEXT, AWAY, RETURN = 64, 110, 64
REVISIT_RADIUS = 4.0
TRAIN_CONTEXT, TRAIN_TARGET = 32, 16

PredictFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RevisitData:
    """Held-out trajectories that explore home (context), go away and come back."""

    trajectories: Trajectories
    """positions (B, τ+A+R+1, 2), actions (B, τ+A+R, 2), frames (B, τ+A+R, 3, 32, 32) uint8"""
    world: World
    """the held-out worlds"""
    context_steps: int
    """τ"""
    away_steps: int
    """A, steps spent away (travel included)"""
    revisit: torch.Tensor
    """(B, A+R) bool over the predicted steps: a return-phase step within REVISIT_RADIUS px of a context position"""


def make_revisit_data(num_worlds: int, seed: int = 1) -> RevisitData:
    """``num_worlds`` held-out worlds (seed ``seed``), one home–away–home trajectory each."""
    world = make_world(seed, 128, num_worlds)
    traj = revisit_trajectories(world, CONTEXT, AWAY, RETURN, torch.Generator().manual_seed(seed), home_size=HOME)
    seen = traj.positions[:, 1:CONTEXT + 1]                                          # p_1..p_τ
    future = traj.positions[:, CONTEXT + 1:]                                         # p_{τ+1}..
    nearest = torch.cdist(future, seen).min(-1).values                              # (B, A+R)
    phase_return = torch.arange(AWAY + RETURN) >= AWAY
    return RevisitData(traj, world, CONTEXT, AWAY, (nearest <= REVISIT_RADIUS) & phase_return)


def revisit_error(predict_fn: PredictFn, data: RevisitData, batch_size: int = 32) -> dict[str, float]:
    """Per-pixel MSE of ``predict_fn``'s crops on revisited places, the whole return phase and the away phase.

    ``predict_fn(context_frames (B, τ, 3, 32, 32) uint8, context_actions (B, τ, 2), future_actions (B, T, 2))``
    returns ``(B, T, 3, 32, 32)`` floats in [0, 1]; it is called on chunks of ``batch_size`` trajectories.
    """
    tau, traj = data.context_steps, data.trajectories
    B = traj.frames.shape[0]
    errors = []
    for i in range(0, B, batch_size):
        sl = slice(i, i + batch_size)
        pred = predict_fn(traj.frames[sl, :tau], traj.actions[sl, :tau], traj.actions[sl, tau:])
        truth = traj.frames[sl, tau:].float() / 255.0
        if pred.shape != truth.shape:
            raise ValueError(f"predict_fn: expected predictions of shape {tuple(truth.shape)}, got {tuple(pred.shape)}")
        errors.append((pred.detach().float().cpu() - truth).square().mean((-3, -2, -1)))   # (b, T)
    err = torch.cat(errors)
    away = torch.arange(err.shape[1]) < data.away_steps
    return {"revisit": float(err[data.revisit].mean()), "return": float(err[:, ~away].mean()),
            "away": float(err[:, away].mean()), "revisit_steps": int(data.revisit.sum())}


def mean_frame_predictor(mean_frame: torch.Tensor) -> PredictFn:
    """Predict the same frame ``(3, 32, 32)`` everywhere."""
    return lambda xc, ac, af: mean_frame.expand(af.shape[0], af.shape[1], *mean_frame.shape)


def context_mean_predictor(xc: torch.Tensor, ac: torch.Tensor, af: torch.Tensor) -> torch.Tensor:
    """Predict the context's mean frame everywhere."""
    return (xc.float() / 255.0).mean(1, keepdim=True).expand(-1, af.shape[1], -1, -1, -1)


def nearest_context_frame(xc: torch.Tensor, ac: torch.Tensor, af: torch.Tensor) -> torch.Tensor:
    """A reference: the context frame whose position (dead reckoning, p_t − p_0 = Σ a) is nearest to the query's."""
    p = torch.cumsum(torch.cat([ac, af], 1), 1)
    idx = torch.cdist(p[:, ac.shape[1]:], p[:, :ac.shape[1]]).argmin(-1)                # (B, T)
    return torch.gather(xc, 1, idx[..., None, None, None].expand(-1, -1, *xc.shape[2:])).float() / 255.0


def make_training_data(num_worlds: int, seed: int = 0) -> Trajectories:
    """One trajectory per world of seed ``seed``: TRAIN_CONTEXT + TRAIN_TARGET steps wandering in a home box."""
    world = make_world(seed, 128, num_worlds)
    gen = torch.Generator().manual_seed(seed)
    home, _ = home_boxes(world, num_worlds, gen, HOME)
    L = TRAIN_CONTEXT + TRAIN_TARGET
    return explore(world, L, gen, boxes=home[:, None].expand(-1, L, -1))


def figure(models: dict[str, GTMSM], data: RevisitData, path: Path, index: int = 0) -> None:
    """Predictions vs ground truth along one long trajectory, and the map rebuilt from GTM-SM's memory."""
    import matplotlib.pyplot as plt

    tau, traj = data.context_steps, data.trajectories
    xc, ac, af = traj.frames[index:index + 1, :tau], traj.actions[index:index + 1, :tau], traj.actions[index:index + 1, tau:]
    steps = list(range(0, af.shape[1], 12))
    rows = {"truth": traj.frames[index, tau:].float() / 255.0}
    for name, model in models.items():
        rows[name] = model.predict(xc, ac, af, torch.Generator().manual_seed(0))[0]
    fig = plt.figure(figsize=(16, 9))
    grid = fig.add_gridspec(len(rows) + 3, len(steps))
    for r, (name, frames) in enumerate(rows.items()):
        for c, t in enumerate(steps):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(frames[t].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                phase = "away" if t < data.away_steps else ("return*" if bool(data.revisit[index, t]) else "return")
                ax.set_title(f"t=τ+{t + 1}\n{phase}", fontsize=7)
    world = data.world.image[int(traj.world_index[index])].permute(1, 2, 0).float() / 255.0
    pos = traj.positions[index]
    ax = fig.add_subplot(grid[len(rows):, : len(steps) // 2])
    ax.imshow(world.numpy())
    ax.plot(pos[:tau + 1, 0], pos[:tau + 1, 1], "w-", lw=1, label="context")
    ax.plot(pos[tau:tau + data.away_steps + 1, 0], pos[tau:tau + data.away_steps + 1, 1], "k-", lw=1, label="away")
    ax.plot(pos[tau + data.away_steps:, 0], pos[tau + data.away_steps:, 1], "r-", lw=1, label="return")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("the world (true) and the trajectory", fontsize=9)
    model = models["GTM-SM"]
    positions, crops = model.memory_map(xc, ac, torch.Generator().manual_seed(0))
    canvas, weight = torch.zeros(3, 128, 128), torch.zeros(1, 128, 128)
    centres = (positions[0] + pos[0]).round().long().clamp(16, 112)                  # p_0 + ŝ_k / Δt
    for (x, y), crop in zip(centres.tolist(), crops[0]):
        canvas[:, y - 16:y + 16, x - 16:x + 16] += crop
        weight[:, y - 16:y + 16, x - 16:x + 16] += 1
    canvas = torch.where(weight > 0, canvas / weight.clamp_min(1), torch.ones_like(canvas))
    ax = fig.add_subplot(grid[len(rows):, len(steps) // 2:])
    ax.imshow(canvas.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title("the map rebuilt from memory: decoded ẑ_k pasted at p_0 + ŝ_k/Δt", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tier", choices=("smoke", "default", "full"), default="default")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps per model (default: by tier)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--figures", action="store_true", help="write benchmarks/figures/gtmsm_revisit.png")
    parser.add_argument("--progress", action="store_true", help="show tqdm bars")
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    steps = args.steps or by_budget(smoke=20, default=900, full=5000, tier=args.tier)
    train = make_training_data(by_budget(smoke=64, default=1024, full=8192, tier=args.tier))
    data = make_revisit_data(by_budget(smoke=16, default=64, full=256, tier=args.tier))
    print(f"data: {train.frames.shape[0]} training trajectories, {data.trajectories.frames.shape[0]} held-out; "
          f"{data.revisit.sum()} revisited steps ({time.perf_counter() - t0:.1f} s)", flush=True)
    results: dict[str, dict] = {}
    models: dict[str, GTMSM] = {}
    for name, memory in (("GTM-SM", True), ("memory=False", False)):
        torch.manual_seed(args.seed)
        model = GTMSM(GTMSMConfig(memory=memory))
        start = time.perf_counter()
        out = train_gtmsm(model, train.frames, train.actions, TRAIN_CONTEXT,
                          GTMSMTrainConfig(num_steps=steps, seed=args.seed, progress=args.progress))
        seconds = time.perf_counter() - start
        model.eval()
        scores = revisit_error(lambda xc, ac, af, m=model: m.predict(xc, ac, af, torch.Generator().manual_seed(0)),
                               data)
        results[name] = {**scores, "train_seconds": seconds, "final_elbo_per_pixel": sum(out.history[-20:]) / 20,
                         "step_size": float(model.step_size.detach()), "state_noise": float(model.state_noise.detach())}
        models[name] = model
        print(name, results[name], flush=True)
    train_mean = train.frames.float().mean((0, 1)) / 255.0
    for name, fn in (("mean frame (training set)", mean_frame_predictor(train_mean)),
                     ("mean frame (context)", context_mean_predictor),
                     ("nearest context frame (reference)", nearest_context_frame)):
        results[name] = revisit_error(fn, data)
        print(name, results[name], flush=True)
    wall = time.perf_counter() - t0
    print()
    print(f"tier {args.tier}, {steps} Adam steps per model, wall time {wall:.0f} s")
    print(f"{'predictor':36s} {'revisit':>9s} {'return':>9s} {'away':>9s}")
    for name, s in results.items():
        print(f"{name:36s} {s['revisit']:9.4f} {s['return']:9.4f} {s['away']:9.4f}")
    out_dir = ROOT / "out" / "gtmsm"
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {"tier": args.tier, "steps": steps, "seed": args.seed, "wall_seconds": wall,
              "train_trajectories": int(train.frames.shape[0]), "heldout": int(data.trajectories.frames.shape[0]),
              "revisit_steps": int(data.revisit.sum()), "context": CONTEXT, "away": AWAY, "return": RETURN,
              "model": asdict(GTMSMConfig())}
    name = f"results_{args.tier}" + ("" if args.steps is None else f"_steps{steps}")
    (out_dir / f"{name}.json").write_text(json.dumps({"config": config, "results": results}, indent=2))
    if args.figures:
        figure(models, data, ROOT / "figures" / "gtmsm_revisit.png")
        print("figure: benchmarks/figures/gtmsm_revisit.png")


if __name__ == "__main__":
    main()
