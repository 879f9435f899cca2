"""Recurrent SSMs on video prediction (issue 14): deterministic RNN, stochastic SSM, VRNN and RSSM, same budget.

For each env (pixel pendulum; cart-pole swing-up with ``--envs pendulum,cartpole``):

1. Seeded episodes of 64×64×3 frames under the gentle exploration policy
   (:func:`mbrl_course.ssm.pixel_data.collect_pixel_sequences`): training sequences and held-out sequences
   (other seeds), T steps each (action repeat 2).
2. Four world models of :mod:`mbrl_course.ssm.rssm` with the same sizes (conv depth d, h of size H, s of size S,
   MLPs of width H), trained with :func:`~mbrl_course.ssm.rssm.train_world_model` for the same number of Adam steps
   on the same chunks (same seed): "rnn" (RSSM with stochastic=False), "ssm" (no h), "vrnn", "rssm".
3. Open-loop prediction on the held-out sequences (:func:`~mbrl_course.ssm.rssm.open_loop_prediction`):
   observe C context frames, imagine k = 1..K steps ahead under the recorded actions, following the prior means;
   per-pixel MSE (pixels in [0, 1]) of the decoded frame and absolute reward error, per horizon k, averaged over
   the held-out sequences. Two baselines without a model: "last frame" repeats the last context frame;
   "mean frame" predicts the training frames' per-pixel mean at every step (a blur that hedges over every
   pendulum angle: what MSE rewards when a model is unsure), with the training set's mean reward. The models
   learn standardised rewards (training mean and std).

Prints a table (MSE at k = 1, 5, 10, 20, K, and the mean over k ≥ 10), writes
``benchmarks/out/recurrent_ssm/<env>_<tier>_s<seed>.json`` and ``video_<envs>_<tier>_s<seed>.png`` beside it;
``--figures`` also saves ``benchmarks/figures/recurrent_ssm_video.png``
(MSE vs k per model, and a strip of frames: truth and each model's prediction at a few horizons).

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/recurrent_ssm.py --tier default [--figures]
        [--envs pendulum,cartpole] [--models rnn,ssm,vrnn,rssm] [--device cpu|cuda] [--seed 0]

Tiers: smoke (seconds, a check that it runs), default (each model ≤ 5 min on one core: d = 8, H = 64, S = 8,
400 steps of 16 chunks × 20 steps), full (PlaNet's sizes d = 32, H = 200, S = 30, chunks 50 × 50; a GPU).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from mbrl_course.budget import TIERS, by_budget  # noqa: E402
from mbrl_course.ssm.conv import postprocess_frames, preprocess_frames  # noqa: E402
from mbrl_course.ssm.pixel_data import collect_pixel_sequences  # noqa: E402
from mbrl_course.ssm.rssm import (  # noqa: E402
    KINDS,
    WorldModelTrainConfig,
    make_world_model,
    open_loop_prediction,
    train_world_model,
)

ENVS = {"pendulum": "Pendulum-v1", "cartpole": "mbrl_course/CartPoleSwingUp-v0"}
ROOT = Path(__file__).resolve().parent
REPORT_K = (1, 5, 10, 20, 30)


def settings(tier: str) -> dict:
    """Data, model and training sizes of a tier."""
    return dict(
        train_sequences=by_budget(8, 96, 400, tier=tier), test_sequences=by_budget(4, 16, 50, tier=tier),
        length=by_budget(12, 50, 100, tier=tier), context=by_budget(4, 10, 10, tier=tier),
        horizon=by_budget(6, 30, 50, tier=tier),
        model=dict(depth=by_budget(4, 8, 32, tier=tier), deterministic_size=by_budget(16, 64, 200, tier=tier),
                   stochastic_size=by_budget(4, 8, 30, tier=tier), hidden_size=by_budget(16, 64, 200, tier=tier)),
        train=dict(num_steps=by_budget(3, 400, 20000, tier=tier), batch_size=by_budget(4, 16, 50, tier=tier),
                   chunk_length=by_budget(8, 20, 50, tier=tier)),
    )


def evaluate(model, test, context: int, horizon: int, reward_scale: tuple[float, float]) -> dict:
    """Per-horizon MSE (pixels in [0, 1]) and |reward error| (env units) over the held-out sequences."""
    dev = next(model.parameters()).device
    model.eval()
    pred, rewards = open_loop_prediction(model, test.frames, test.actions, context, horizon)
    rewards = rewards * reward_scale[1] + reward_scale[0]  # back from the standardised rewards the model learnt
    truth = preprocess_frames(test.frames[:, context:context + horizon].to(dev))
    mse = (pred - truth).square().mean((0, 2, 3, 4))  # (K,)
    reward_err = (rewards - test.rewards[:, context:context + horizon].to(dev)).abs().mean(0)
    model.train()
    return {"mse": mse.tolist(), "reward_abs_error": reward_err.tolist(), "predictions": pred[:1].cpu()}


def last_frame_baseline(test, context: int, horizon: int) -> dict:
    truth = preprocess_frames(test.frames[:, context:context + horizon])
    last = preprocess_frames(test.frames[:, context - 1:context])
    return {"mse": (truth - last).square().mean((0, 2, 3, 4)).tolist(),
            "reward_abs_error": [0.0] * horizon}


def mean_frame_baseline(train, test, context: int, horizon: int) -> dict:
    """Predict the training frames' per-pixel mean at every step: what a blurred, hedging prediction scores."""
    truth = preprocess_frames(test.frames[:, context:context + horizon])
    mean = preprocess_frames(train.frames).mean((0, 1))
    return {"mse": (truth - mean).square().mean((0, 2, 3, 4)).tolist(), "reward_abs_error": (
        (test.rewards[:, context:context + horizon] - train.rewards.mean()).abs().mean(0).tolist())}


def run_env(name: str, tier: str, kinds: list[str], device: str, seed: int, steps: int | None = None) -> dict:
    cfg = settings(tier)
    if steps is not None:
        cfg["train"]["num_steps"] = steps
    env_id = ENVS[name]
    t0 = time.time()
    train = collect_pixel_sequences(env_id, cfg["train_sequences"], cfg["length"], seed=seed)
    test = collect_pixel_sequences(env_id, cfg["test_sequences"], cfg["length"], seed=seed + 100_000)
    print(f"[{name}] data: {len(train)} + {len(test)} sequences of {cfg['length']} frames "
          f"({time.time() - t0:.1f} s)", flush=True)
    results = {"env": env_id, "tier": tier, "settings": cfg, "models": {}}
    results["models"]["last frame"] = last_frame_baseline(test, cfg["context"], cfg["horizon"])
    results["models"]["mean frame"] = mean_frame_baseline(train, test, cfg["context"], cfg["horizon"])
    predictions = {}
    # rewards standardised with the training set's mean and std: PlaNet's rewards are O(1) per step, Pendulum's
    # O(10), which a head starting at 0 with Adam's step 1e-3 does not reach in a few hundred steps
    reward_scale = (float(train.rewards.mean()), float(train.rewards.std()) + 1e-6)
    train_rewards = (train.rewards - reward_scale[0]) / reward_scale[1]
    results["reward_mean_std"] = reward_scale
    for kind in kinds:
        torch.manual_seed(seed)
        model = make_world_model(kind, action_dim=train.actions.shape[-1], **cfg["model"])
        t1 = time.time()
        res = train_world_model(model, train.frames, train.actions, train_rewards,
                                WorldModelTrainConfig(seed=seed, **cfg["train"]), device=device)
        wall = time.time() - t1
        ev = evaluate(model, test, cfg["context"], cfg["horizon"], reward_scale)
        predictions[kind] = ev.pop("predictions")
        n_params = sum(p.numel() for p in model.parameters())
        results["models"][kind] = {**ev, "train_seconds": wall, "final_loss": sum(res.history[-20:]) / min(20, len(
            res.history)), "parameters": n_params}
        print(f"[{name}] {kind}: {cfg['train']['num_steps']} steps in {wall:.1f} s, final loss "
              f"{results['models'][kind]['final_loss']:.1f}, {n_params} parameters", flush=True)
    results["truth"] = test.frames[:1, cfg["context"]:cfg["context"] + cfg["horizon"]]
    results["predictions"] = predictions
    return results


def table(results: dict) -> str:
    K = len(results["models"]["last frame"]["mse"])
    ks = [k for k in REPORT_K if k <= K]
    if K not in ks:
        ks.append(K)
    head = f"{'model':<11}" + "".join(f"  MSE k={k:<3}" for k in ks) + "  MSE k≥10 " + "  |Δr| k≥10"
    lines = [f"{results['env']} ({results['tier']}): open-loop per-pixel MSE (pixels in [0, 1]) after "
             f"{results['settings']['context']} context frames", head]
    for name, m in results["models"].items():
        late = m["mse"][9:] or m["mse"]
        late_r = m["reward_abs_error"][9:] or m["reward_abs_error"]
        lines.append(f"{name:<11}" + "".join(f"  {m['mse'][k - 1]:9.5f}" for k in ks)
                     + f"  {sum(late) / len(late):9.5f}"
                     + (f"  {sum(late_r) / len(late_r):9.4f}" if name != "last frame" else "          -"))
    return "\n".join(lines)


def figure(all_results: list[dict], path: Path) -> None:
    n_env = len(all_results)
    kinds = [k for k in all_results[0]["predictions"]]
    shown = [k for k in (1, 5, 10, 20, 30) if k <= len(all_results[0]["models"]["last frame"]["mse"])]
    fig = plt.figure(figsize=(3.2 + 1.1 * len(shown), 3.2 * n_env + 1.1 * (len(kinds) + 1) * n_env))
    grid = fig.add_gridspec(n_env * (len(kinds) + 5), 1 + len(shown))
    row = 0
    for res in all_results:
        ax = fig.add_subplot(grid[row:row + 3, :])
        for name, m in res["models"].items():
            ax.plot(range(1, len(m["mse"]) + 1), m["mse"], label=name, ls="--" if name.endswith("frame") else "-")
        ax.set(xlabel="prediction horizon k [agent steps]", ylabel="per-pixel MSE",
               title=f"{res['env']}: open-loop video prediction ({res['tier']} tier)")
        ax.legend(fontsize=8)
        row += 4
        strips = [("truth", res["truth"][0])] + [(k, postprocess_frames(res["predictions"][k][0])) for k in kinds]
        for label, frames in strips:
            for j, k in enumerate(shown):
                a = fig.add_subplot(grid[row, 1 + j])
                a.imshow(frames[k - 1].numpy())
                a.set_xticks([])
                a.set_yticks([])
                if label == "truth":
                    a.set_title(f"k={k}", fontsize=8)
            lab = fig.add_subplot(grid[row, 0])
            lab.axis("off")
            lab.text(0.9, 0.5, label, ha="right", va="center")
            row += 1
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tier", choices=TIERS, default="default")
    parser.add_argument("--envs", default="pendulum", help="comma-separated subset of pendulum,cartpole")
    parser.add_argument("--models", default=",".join(KINDS), help="comma-separated subset of rnn,ssm,vrnn,rssm")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default: 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="Adam steps per model (default: the tier's)")
    parser.add_argument("--figures", action="store_true", help="save benchmarks/figures/recurrent_ssm_video.png")
    parser.add_argument("--out", default=str(ROOT / "out" / "recurrent_ssm"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kinds = args.models.split(",")
    for k in kinds:
        if k not in KINDS:
            raise SystemExit(f"--models: expected a subset of {', '.join(KINDS)}, got {k!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    all_results = []
    start = time.time()
    for name in args.envs.split(","):
        if name not in ENVS:
            raise SystemExit(f"--envs: expected a subset of {', '.join(ENVS)}, got {name!r}")
        res = run_env(name, args.tier, kinds, args.device, args.seed, args.steps)
        print(table(res), flush=True)
        all_results.append(res)
        saved = {k: v for k, v in res.items() if k not in ("truth", "predictions")}
        tag = f"{args.tier}_s{args.seed}" + ("" if args.steps is None else f"_{args.steps}steps")
        (out / f"{name}_{tag}.json").write_text(json.dumps(saved, indent=1))
    envs = "_".join(args.envs.split(","))
    figure(all_results, out / f"video_{envs}_{tag}.png")
    if args.figures:
        figure(all_results, ROOT / "figures" / "recurrent_ssm_video.png")
    print(f"total wall time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
