"""Training runs on disk: what ``mbrl-course train`` and ``mbrl-course evaluate`` do.

A run directory holds

- ``returns.csv``         one row per episode: ``episode,return,env_steps,wall_s`` (cumulative steps and seconds)
- ``learning_curve.png``  episode return against env steps
- ``checkpoint.pt``       config (nested dicts), the agent's ``state_dict()`` (model; policy, critics, optimisers;
                          its generators), D_real and torch's random state after the last finished episode
- ``rollout.gif``         the last training episode, when the env renders; for the pixel agents (PlaNet, Dreamer)
                          three panels per frame: the real frame, the world model's reconstruction of it, and
                          its open-loop imagination from a few frames in under the recorded actions

The checkpoint is rewritten atomically after every episode, so a crash or Ctrl-C never leaves a
broken file; ``train(..., resume=True)`` continues from it. Recording never stops a run: an env that
cannot render (``render_mode`` None, or ``render()`` failing midway) trains on without ``rollout.gif``.

Every agent is treated alike: checkpointed by its ``state_dict()`` (its generators included), evaluated
with its ``evaluation_actor()``. The named algorithms and their configs are in :mod:`mbrl_course.runs.algorithms`.
``pixels=True`` (``--pixels``) observes the env through :func:`~mbrl_course.envs.make_pixel_env` (64×64×3 uint8
frames, action repeat) and keeps D_real as an :class:`~mbrl_course.data.EpisodeBuffer` of frames; only the
algorithms that learn from frames accept it (and they need it).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from mbrl_course._checks import check_choice, check_positive_int, resolve_device
from mbrl_course.agents.dyna import dyna_loop
from mbrl_course.agents.latent import reconstruct_and_imagine
from mbrl_course.agents.mbmf_ft import mbmf_ft_loop
from mbrl_course.agents.mpc import EpisodeResult, RandomAgent, mpc_loop, run_episode
from mbrl_course.budget import Tier
from mbrl_course.envs import make_env, make_pixel_env
from mbrl_course.runs.algorithms import ALGORITHMS, PIXEL_ALGORITHMS, make_config
from mbrl_course.runs.settings import config_from_dict

__all__ = ["CHECKPOINT_VERSION", "evaluate", "load_run", "summarize", "train"]


def _loop(algo: str) -> Callable[..., list[EpisodeResult]]:
    """The loop function of ``algo``, looked up when called (so tests may replace it)."""
    return {"mpc": mpc_loop, "dyna": dyna_loop, "mbmf_ft": mbmf_ft_loop}[ALGORITHMS[algo].loop]


CHECKPOINT_VERSION = 2
"""2: composed configs (nested dicts) and every agent's whole ``state_dict()``; 1: flat configs."""


class SafeRender(gym.Wrapper):
    """``render()`` that never stops a run: the first exception becomes one warning, and None from then on."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.failed = False
        """True once ``render()`` raised: the recording is incomplete."""

    def render(self):
        if self.failed:
            return None
        try:
            return self.env.render()
        except Exception as err:  # a GL context lost midway, a missing display: record nothing more
            self.failed = True
            warnings.warn(f"rollout.gif: env.render() failed ({type(err).__name__}: {err}); training goes on "
                          "without recording", stacklevel=2)
            return None


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_returns(rows: list[dict[str, float]], path: Path) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["episode", "return", "env_steps", "wall_s"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"episode": int(row["episode"]), "return": f"{row['return']:.4f}",
                             "env_steps": int(row["env_steps"]), "wall_s": f"{row['wall_s']:.2f}"})
    os.replace(tmp, path)


def _check_pixels(algo: str, pixels: bool) -> None:
    """``--pixels`` only for the algorithms that learn from frames, and always for them."""
    if pixels and not ALGORITHMS[algo].pixels:
        raise ValueError(f"pixels: {algo} learns from the env's state vector, not from frames; --pixels works with "
                         f"{', '.join(PIXEL_ALGORITHMS)}")
    if ALGORITHMS[algo].pixels and not pixels:
        raise ValueError(f"pixels: {algo} learns from 64×64×3 frames; pass --pixels (pixels=True)")


def _make_env(env_id: str, pixels: bool, render_mode: str | None, env_kwargs: Mapping[str, Any]) -> gym.Env:
    """The env of a run: its state vector, or 64×64×3 frames (which the pixel wrapper always renders)."""
    if pixels:
        return make_pixel_env(env_id, **env_kwargs)
    return make_env(env_id, render_mode=render_mode, **env_kwargs)


def _latent_panels(model, buffer, steps: int, context: int = 5) -> list[np.ndarray]:
    """The last episode of D_real (``steps`` transitions) as frames of three panels: real | reconstruction |
    open-loop imagination after ``context`` filtered frames. Each (64, 3·64 + 4, 3) uint8."""
    last = buffer.batch(torch.arange(len(buffer) - steps, len(buffer), device=buffer.device))
    frames = torch.cat([last.obs[:1], last.next_obs])  # y_0 (the reset frame), y_1 .. y_T
    actions = torch.cat([torch.zeros_like(last.action[:1]), last.action])  # a_{t-1} before each frame
    reconstruction, imagination = reconstruct_and_imagine(model, frames, actions, context)
    gap = torch.full((frames.shape[0], frames.shape[1], 2, 3), 255, dtype=torch.uint8)
    panels = torch.cat([frames.cpu(), gap, reconstruction.cpu(), gap, imagination.cpu()], 2)
    return list(panels.numpy())


def load_run(run_dir: str | Path, *, device: str | torch.device | None = "cpu", render_mode: str | None = None):
    """Rebuild the env, agent and D_real of a run from its checkpoint. Returns (env, agent, buffer, checkpoint).

    The checkpoint's config comes back as the algorithm's config dataclass, in ``checkpoint["config"]``.
    """
    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"run_dir: no checkpoint.pt in {run_dir} (train a run there first)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"run_dir: {path} holds a checkpoint of version {ckpt.get('version')}; this mbrl_course "
                         f"reads version {CHECKPOINT_VERSION} (version 1 stored flat configs, before they were "
                         "composed): train the run again (--overwrite)")
    device = resolve_device(device)
    algo = ALGORITHMS[ckpt["algo"]]
    ckpt["config"] = config_from_dict(algo.config_cls, ckpt["config"])
    env = _make_env(ckpt["env_id"], ckpt.get("pixels", False), render_mode, ckpt.get("env_kwargs", {}))
    agent = algo.build(env, ckpt["env_id"], ckpt["config"], device=device, seed=ckpt["seed"])
    agent.load_state_dict(ckpt["agent"])
    buffer = algo.make_buffer(env, ckpt["config"], device)
    buffer.load_state_dict(ckpt["buffer"])
    return env, agent, buffer, ckpt


def train(
    algo: str,
    env_id: str,
    *,
    episodes: int,
    out: str | Path,
    seed: int = 0,
    device: str | torch.device | None = "cpu",
    tier: Tier | None = None,
    overrides: Mapping[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    record: bool = True,
    progress: bool = True,
    env_kwargs: Mapping[str, Any] | None = None,
    pixels: bool = False,
) -> list[dict[str, float]]:
    """Train ``algo`` on ``env_id`` for ``episodes`` episodes, writing the run directory ``out``.

    Returns the rows of ``returns.csv``. With ``resume=True`` continues from ``out/checkpoint.pt``
    (the config stored there wins). ``env_kwargs`` go to ``make_env`` (e.g. ``max_episode_steps``), over
    the algorithm's own defaults for the env (PILCO: 40-step cart-pole trials). ``pixels``: observe 64×64×3
    frames (PlaNet and Dreamer need it; the others refuse it).
    A Ctrl-C saves D_real so far and the checkpoint of the last finished episode, then re-raises;
    a model fit or a learner whose loss diverges (NaN/inf) keeps the last good checkpoint and raises
    ``FloatingPointError``.
    """
    check_choice("algo", algo, tuple(ALGORITHMS))
    episodes = check_positive_int("episodes", episodes)
    seed = int(seed)
    pixels = bool(pixels)
    device = resolve_device(device)
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"out: {out} already holds a run; pass resume=True (--resume) to continue it "
            "or overwrite=True (--overwrite) to start again"
        )
    resuming = resume and ckpt_path.exists()
    if not resuming:
        _check_pixels(algo, pixels)
    env_kwargs = {**ALGORITHMS[algo].env_defaults.get(env_id, {}), **dict(env_kwargs or {})}
    if not resuming:
        config = make_config(algo, tier=tier, overrides=overrides)  # bad settings fail before anything is written
    out.mkdir(parents=True, exist_ok=True)

    render_mode = "rgb_array" if record else None
    if resuming:
        env, agent, buffer, ckpt = load_run(out, device=device, render_mode=render_mode)
        if ckpt["algo"] != algo or ckpt["env_id"] != env_id:
            raise ValueError(f"resume: {out} holds a {ckpt['algo']} run on {ckpt['env_id']}, not {algo} on {env_id}")
        config, seed = ckpt["config"], ckpt["seed"]
        env_kwargs, pixels = ckpt.get("env_kwargs", {}), ckpt.get("pixels", False)
        rows, start_episode = list(ckpt["returns"]), ckpt["episodes_done"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        seed_agent_state = ckpt.get("seed_agent_rng")
    else:
        env = _make_env(env_id, pixels, render_mode, env_kwargs)
        agent = ALGORITHMS[algo].build(env, env_id, config, device=device, seed=seed)
        buffer = ALGORITHMS[algo].make_buffer(env, config, device)
        rows, start_episode, seed_agent_state = [], 0, None
    record = record and env.render_mode is not None  # an env that cannot render trains on without a GIF
    renderer = SafeRender(env) if record else None
    env = renderer or env
    loop_kwargs = ALGORITHMS[algo].loop_kwargs(config)
    world_model = ALGORITHMS[algo].world_model

    seed_agent = RandomAgent(env.action_space, seed=seed)  # the agent that seeds D_real
    if seed_agent_state is not None:
        seed_agent.rng.bit_generator.state = seed_agent_state
    clock0 = time.perf_counter() - (rows[-1]["wall_s"] if rows else 0.0)

    def checkpoint(episodes_done: int) -> None:
        _atomic_save({
            "version": CHECKPOINT_VERSION, "algo": algo, "env_id": env_id, "seed": seed,
            "config": dataclasses.asdict(config), "env_kwargs": dict(env_kwargs or {}), "pixels": pixels,
            "episodes_done": episodes_done,
            "returns": rows, "agent": agent.state_dict(), "buffer": buffer.state_dict(),
            "rng": {"torch": torch.get_rng_state()}, "seed_agent_rng": seed_agent.rng.bit_generator.state,
        }, ckpt_path)

    def plot() -> None:
        from mbrl_course.viz import plot_learning_curve

        plot_learning_curve(rows, out / "learning_curve.png", title=f"{algo.upper()} on {env_id} (seed {seed})",
                            label=algo, seed_episodes=ALGORITHMS[algo].seeded(loop_kwargs, rows))

    bar = tqdm(total=episodes, initial=start_episode, desc=f"{algo} {env_id}", unit="episode",
               disable=not progress, file=sys.stderr)

    def on_episode(result: EpisodeResult) -> None:
        steps = int(rows[-1]["env_steps"]) if rows else 0
        rows.append({"episode": result.episode, "return": result.ret, "env_steps": steps + result.steps,
                     "wall_s": time.perf_counter() - clock0})
        _write_returns(rows, out / "returns.csv")
        plot()
        checkpoint(result.episode + 1)
        frames = [frame for frame in result.frames or () if frame is not None]
        if frames and not renderer.failed:
            try:
                from mbrl_course.viz import save_gif

                if world_model is not None:  # real | reconstruction | open-loop imagination
                    frames = _latent_panels(world_model(agent), buffer, result.steps)
                save_gif(frames, out / "rollout.gif", fps=env.metadata.get("render_fps", 30))
            except Exception as err:  # a GIF is a nicety; never lose a run over it
                warnings.warn(f"could not write rollout.gif: {err}", stacklevel=2)
        bar.update(1)
        bar.set_postfix(ret=f"{result.ret:.1f}")

    try:
        _loop(algo)(env, agent, buffer, episodes=episodes, seed=seed, start_episode=start_episode,
                    on_episode=on_episode, record_last=record, seed_agent=seed_agent, **loop_kwargs)
    except KeyboardInterrupt:
        # keep every real transition gathered so far; the episode in progress is re-run on resume
        ckpt = torch.load(ckpt_path, weights_only=False) if ckpt_path.exists() else None
        if ckpt is not None:
            ckpt["buffer"] = buffer.state_dict()
            _atomic_save(ckpt, ckpt_path)
        print(f"\ninterrupted: {len(rows)} finished episodes kept in {out}; continue with --resume",
              file=sys.stderr)
        raise
    except FloatingPointError as err:
        raise FloatingPointError(f"{err} -- the last good checkpoint is kept in {ckpt_path}") from err
    finally:
        bar.close()
        env.close()
    return rows


def evaluate(run_dir: str | Path, *, episodes: int = 3, device: str | torch.device | None = "cpu",
             seed: int = 10_000, progress: bool = True) -> list[float]:
    """Reload a run's checkpoint and return the undiscounted return of ``episodes`` fresh episodes.

    Agents with a policy (MBPO, SAC, MBMF fine-tuned) act with its mean action.
    """
    episodes = check_positive_int("episodes", episodes)
    env, agent, _, _ = load_run(run_dir, device=device)
    actor = agent.evaluation_actor()
    returns = []
    for episode in tqdm(range(episodes), desc="evaluate", unit="episode", disable=not progress, file=sys.stderr):
        returns.append(run_episode(env, actor, None, episode=episode, seed=seed).ret)
    env.close()
    return returns


def summarize(returns: list[float]) -> str:
    """``mean ± std over n episodes`` for printing."""
    arr = np.asarray(returns, dtype=float)
    return f"{arr.mean():.1f} ± {arr.std():.1f} over {arr.size} episodes"

