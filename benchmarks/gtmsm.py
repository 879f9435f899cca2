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
frame seen nearest to the true position. Any model plugs into :func:`revisit_error` as a
``predict_fn(context_frames, context_actions, future_actions) -> (B, T, 3, 32, 32)`` floats in [0, 1].

The RSSM without memory (:mod:`mbrl_course.ssm.rssm`, kind "rssm", PlaNet's conv encoder/decoder for 64×64×3
frames; :func:`rssm_settings`): trained with :func:`~mbrl_course.ssm.rssm.train_world_model` on the same training
trajectories, crops upsampled 2× by nearest neighbour (:func:`to_rssm_frames`), actions a_t / max speed, no reward
head (the world has no rewards: ``reward_head=False``, ``rewards=None``), one chunk = a whole 48-step trajectory.
Its predictor (:func:`rssm_predictor`) observes the τ context frames with their actions, imagines the rest open loop
under the future actions following the prior means, decodes, and average-pools 2× back to 32×32 in [0, 1].
Its entry also has ``context_reconstruction``, the filter's reconstruction error on the held-out context frames
(how well it learnt to encode and decode at all: a floor for its predictions).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/gtmsm.py --tier default [--figures] [--steps N]
        [--models gtmsm,nomemory,rssm] [--rssm-steps N]

Writes ``benchmarks/out/gtmsm/results_<tier>.json`` (``_steps<N>``, ``_rssmsteps<N>`` added with ``--steps``,
``--rssm-steps``), merged into the file already there: the models run replace their own entries (and the
baselines, recomputed, are the same), the others' stay; the RSSM's settings go under ``config["rssm"]``. With
``--figures`` (needs ``gtmsm`` in ``--models``), ``benchmarks/figures/gtmsm_revisit.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as nnf

from mbrl_course.budget import by_budget
from mbrl_course.ssm.gtmsm import GTMSM, GTMSMConfig, GTMSMTrainConfig, train_gtmsm
from mbrl_course.ssm.rssm import RecurrentSSM, WorldModelTrainConfig, make_world_model, train_world_model
from mbrl_course.ssm.worlds import Trajectories, World, explore, home_boxes, make_world, revisit_trajectories
from mbrl_course.viz.recurrent_ssm import paste_memory_map

ROOT = Path(__file__).resolve().parent
HOME = 24.0
CONTEXT, AWAY, RETURN = 64, 110, 64
REVISIT_RADIUS = 4.0
TRAIN_CONTEXT, TRAIN_TARGET = 32, 16
MAX_SPEED = 3.0
"""|a_t|_∞ ≤ max speed [pixels per step] (:func:`~mbrl_course.ssm.worlds.explore`'s default): the RSSM reads a_t / MAX_SPEED"""
MODELS = ("gtmsm", "nomemory", "rssm")

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


def to_rssm_frames(frames: torch.Tensor) -> torch.Tensor:
    """Crops ``(..., 3, 32, 32)`` uint8 -> the RSSM's frames ``(..., 64, 64, 3)`` uint8, each pixel repeated 2×2."""
    return frames.repeat_interleave(2, -1).repeat_interleave(2, -2).movedim(-3, -1).contiguous()


def from_rssm_images(images: torch.Tensor) -> torch.Tensor:
    """The RSSM's decoded means ``(B, T, 3, 64, 64)`` in [-0.5, 0.5] -> crops ``(B, T, 3, 32, 32)``: 2×2 average
    pooling of y + ½, clamped to [0, 1]."""
    return nnf.avg_pool2d(images.flatten(0, 1) + 0.5, 2).unflatten(0, images.shape[:2]).clamp(0.0, 1.0)


def rssm_settings(tier: str) -> dict:
    """The RSSM's sizes and training (``benchmarks/recurrent_ssm.py``'s tiers; chunks = whole training trajectories)."""
    return dict(model=dict(depth=by_budget(4, 8, 32, tier=tier), deterministic_size=by_budget(16, 64, 200, tier=tier),
                           stochastic_size=by_budget(4, 8, 30, tier=tier), hidden_size=by_budget(16, 64, 200, tier=tier)),
                train=dict(num_steps=by_budget(3, 400, 20000, tier=tier), batch_size=by_budget(4, 16, 50, tier=tier),
                           chunk_length=TRAIN_CONTEXT + TRAIN_TARGET))


def rssm_predictor(model: RecurrentSSM, seed: int = 0) -> PredictFn:
    """Observe y_{1:τ} (posterior q(s_t | h_t, e_t)), then imagine s_{τ+k} from p(s | h) following its means under
    the future actions; x̂ = avg-pool₂(dec([h, s]) + ½) clamped to [0, 1]: ``(B, T, 3, 32, 32)``."""

    @torch.no_grad()
    def predict(xc: torch.Tensor, ac: torch.Tensor, af: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
        posterior, _ = model.observe(to_rssm_frames(xc), ac / MAX_SPEED, generator=generator)
        future = model.imagine(posterior[:, -1], actions=af / MAX_SPEED, generator=generator, sample=False)
        return from_rssm_images(model.decode(future.states.features))

    return predict


@torch.no_grad()
def rssm_reconstruction_error(model: RecurrentSSM, data: RevisitData, batch_size: int = 32, seed: int = 0) -> float:
    """A diagnostic of the RSSM's training: per-pixel MSE of avg-pool₂(dec([h_t, s_t]) + ½), s_t from the filter
    q(s_t | h_t, e_t), on the held-out context frames (frames it has seen: a floor for its predictions)."""
    tau, traj = data.context_steps, data.trajectories
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    errors = []
    for i in range(0, traj.frames.shape[0], batch_size):
        xc, ac = traj.frames[i:i + batch_size, :tau], traj.actions[i:i + batch_size, :tau]
        posterior, _ = model.observe(to_rssm_frames(xc), ac / MAX_SPEED, generator=generator)
        pred = from_rssm_images(model.decode(posterior.features))
        errors.append((pred.cpu() - xc.float() / 255.0).square().mean((-3, -2, -1)))
    return float(torch.cat(errors).mean())


def make_training_data(num_worlds: int, seed: int = 0) -> Trajectories:
    """One trajectory per world of seed ``seed``: TRAIN_CONTEXT + TRAIN_TARGET steps wandering in a home box."""
    world = make_world(seed, 128, num_worlds)
    gen = torch.Generator().manual_seed(seed)
    home, _ = home_boxes(world, num_worlds, gen, HOME)
    L = TRAIN_CONTEXT + TRAIN_TARGET
    return explore(world, L, gen, boxes=home[:, None].expand(-1, L, -1))


def figure(predictors: dict[str, PredictFn], gtmsm: GTMSM, data: RevisitData, path: Path, index: int = 0) -> None:
    """Predictions vs ground truth along one long trajectory, and the map rebuilt from GTM-SM's memory."""
    import matplotlib.pyplot as plt

    tau, traj = data.context_steps, data.trajectories
    xc, ac, af = traj.frames[index:index + 1, :tau], traj.actions[index:index + 1, :tau], traj.actions[index:index + 1, tau:]
    steps = list(range(0, af.shape[1], 12))
    rows = {"truth": traj.frames[index, tau:].float() / 255.0}
    for name, predict in predictors.items():
        rows[name] = predict(xc, ac, af)[0]
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
    positions, crops = gtmsm.memory_map(xc, ac, torch.Generator().manual_seed(0))
    canvas = paste_memory_map(positions[0] + pos[0], crops[0], size=world.shape[0])  # at p_0 + ŝ_k / Δt
    ax = fig.add_subplot(grid[len(rows):, len(steps) // 2:])
    ax.imshow(canvas.clip(0, 1))
    ax.set_title("the map rebuilt from memory: decoded ẑ_k pasted at p_0 + ŝ_k/Δt", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tier", choices=("smoke", "default", "full"), default="default")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of gtmsm,nomemory,rssm")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps per GTM-SM model (default: by tier)")
    parser.add_argument("--rssm-steps", type=int, default=None, help="Adam steps of the RSSM (default: by tier)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--figures", action="store_true", help="write benchmarks/figures/gtmsm_revisit.png")
    parser.add_argument("--progress", action="store_true", help="show tqdm bars")
    args = parser.parse_args()
    kinds = args.models.split(",")
    for kind in kinds:
        if kind not in MODELS:
            raise SystemExit(f"--models: expected a subset of {', '.join(MODELS)}, got {kind!r}")
    if args.figures and "gtmsm" not in kinds:
        raise SystemExit("--figures: the figure shows GTM-SM's memory map, expected gtmsm in --models, "
                         f"got {args.models!r}")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    steps = args.steps or by_budget(smoke=20, default=900, full=5000, tier=args.tier)
    train = make_training_data(by_budget(smoke=64, default=1024, full=8192, tier=args.tier))
    data = make_revisit_data(by_budget(smoke=16, default=64, full=256, tier=args.tier))
    print(f"data: {train.frames.shape[0]} training trajectories, {data.trajectories.frames.shape[0]} held-out; "
          f"{data.revisit.sum()} revisited steps ({time.perf_counter() - t0:.1f} s)", flush=True)
    results: dict[str, dict] = {}
    predictors: dict[str, PredictFn] = {}
    gtmsm = None
    for kind, name, memory in (("gtmsm", "GTM-SM", True), ("nomemory", "memory=False", False)):
        if kind not in kinds:
            continue
        torch.manual_seed(args.seed)
        model = GTMSM(GTMSMConfig(memory=memory))
        start = time.perf_counter()
        out = train_gtmsm(model, train.frames, train.actions, TRAIN_CONTEXT,
                          GTMSMTrainConfig(num_steps=steps, seed=args.seed, progress=args.progress))
        seconds = time.perf_counter() - start
        model.eval()
        predictors[name] = lambda xc, ac, af, m=model: m.predict(xc, ac, af, torch.Generator().manual_seed(0))
        scores = revisit_error(predictors[name], data)
        results[name] = {**scores, "train_seconds": seconds, "final_elbo_per_pixel": sum(out.history[-20:]) / 20,
                         "step_size": float(model.step_size.detach()), "state_noise": float(model.state_noise.detach())}
        gtmsm = model if memory else gtmsm
        print(name, results[name], flush=True)
    rssm = rssm_settings(args.tier)
    if args.rssm_steps is not None:
        rssm["train"]["num_steps"] = args.rssm_steps
    if "rssm" in kinds:
        name = "RSSM (no memory)"
        torch.manual_seed(args.seed)
        model = make_world_model("rssm", action_dim=train.actions.shape[-1], reward_head=False, **rssm["model"])
        start = time.perf_counter()
        out = train_world_model(model, to_rssm_frames(train.frames), train.actions / MAX_SPEED, None,
                                WorldModelTrainConfig(seed=args.seed, progress=args.progress, **rssm["train"]))
        seconds = time.perf_counter() - start
        model.eval()
        predictors[name] = rssm_predictor(model, seed=0)
        results[name] = {**revisit_error(predictors[name], data),
                         "context_reconstruction": rssm_reconstruction_error(model, data), "train_seconds": seconds,
                         "final_loss": sum(out.history[-20:]) / len(out.history[-20:]),
                         "parameters": sum(p.numel() for p in model.parameters())}
        print(name, results[name], flush=True)
    train_mean = train.frames.float().mean((0, 1)) / 255.0
    for name, fn in (("mean frame (training set)", mean_frame_predictor(train_mean)),
                     ("mean frame (context)", context_mean_predictor),
                     ("nearest context frame (reference)", nearest_context_frame)):
        results[name] = revisit_error(fn, data)
        print(name, results[name], flush=True)
    wall = time.perf_counter() - t0
    out_dir = ROOT / "out" / "gtmsm"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (f"results_{args.tier}" + ("" if args.steps is None else f"_steps{steps}")
                      + ("" if args.rssm_steps is None else f"_rssmsteps{args.rssm_steps}") + ".json")
    stored = json.loads(path.read_text()) if path.exists() else {"config": {}, "results": {}}
    config = stored["config"]
    config.update({"tier": args.tier, "seed": args.seed, "train_trajectories": int(train.frames.shape[0]),
                   "heldout": int(data.trajectories.frames.shape[0]), "revisit_steps": int(data.revisit.sum()),
                   "context": CONTEXT, "away": AWAY, "return": RETURN})
    if "gtmsm" in kinds or "nomemory" in kinds:
        config.update({"steps": steps, "wall_seconds": wall, "model": asdict(GTMSMConfig())})
    if "rssm" in kinds:
        config["rssm"] = {**rssm, "action_scale": 1.0 / MAX_SPEED, "reward_head": False, "wall_seconds": wall}
    stored["results"].update(results)
    path.write_text(json.dumps(stored, indent=2))
    print()
    print(f"tier {args.tier}, models {args.models}, wall time {wall:.0f} s; {path.relative_to(ROOT.parent)} "
          "(stored entries of models not run kept)")
    print(f"{'predictor':36s} {'revisit':>9s} {'return':>9s} {'away':>9s}")
    for name, s in stored["results"].items():
        print(f"{name:36s} {s['revisit']:9.4f} {s['return']:9.4f} {s['away']:9.4f}"
              + ("" if name in results else "   (stored)"))
    if args.figures:
        figure(predictors, gtmsm, data, ROOT / "figures" / "gtmsm_revisit.png")
        print("figure: benchmarks/figures/gtmsm_revisit.png")


if __name__ == "__main__":
    main()
