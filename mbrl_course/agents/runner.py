"""Training runs on disk: what ``mbrl-course train`` and ``mbrl-course evaluate`` do.

A run directory holds

- ``returns.csv``         one row per episode: ``episode,return,env_steps,wall_s`` (cumulative steps and seconds)
- ``learning_curve.png``  episode return against env steps
- ``checkpoint.pt``       config, the agent's state (model; policy, critics, optimisers for the Dyna agents),
                          D_real and random-number states after the last finished episode
- ``rollout.gif``         the last training episode, when the env renders

The checkpoint is rewritten atomically after every episode, so a crash or Ctrl-C never leaves a
broken file; ``train(..., resume=True)`` continues from it.

Each named algorithm (:data:`ALGORITHMS`) is a config, a builder and the loop that runs it: the MPC
loop (PETS, MBMF), the Dyna loop (MBPO, SAC alone) or MBMF's fine-tuning (MPC → DAgger → PPO).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mbrl_course._checks import check_choice, check_positive_int, resolve_device
from mbrl_course.agents.dyna import dyna_loop
from mbrl_course.agents.mbmf import MBMFConfig, make_mbmf
from mbrl_course.agents.mbmf_ft import MBMFFTConfig, make_mbmf_ft, mbmf_ft_loop, mbmf_ft_loop_kwargs
from mbrl_course.agents.mbpo import MBPOConfig, make_mbpo, mbpo_loop_kwargs
from mbrl_course.agents.mpc import EpisodeResult, MPCAgent, mpc_loop, run_episode
from mbrl_course.agents.pets import PETSConfig, make_pets
from mbrl_course.agents.sac import SACAgentConfig, make_sac, sac_loop_kwargs
from mbrl_course.budget import Tier, budget
from mbrl_course.data import ReplayBuffer
from mbrl_course.envs import make_env


def _mpc_loop_kwargs(config) -> dict[str, Any]:
    return {"seed_episodes": config.seed_episodes}


@dataclass(frozen=True)
class Algorithm:
    """A named agent: its config class, the function that builds it for an env, and the loop that runs it.

    Agents of the MPC loop (:class:`MPCAgent`) are checkpointed as their model and random-number
    states; every other agent by its own ``state_dict()`` / ``load_state_dict()``.
    """

    config_cls: type
    """the dataclass of its hyperparameters, with ``for_budget(tier)``"""
    build: Callable[..., Any]
    """``build(env, env_id, config, device=, seed=)`` -> agent"""
    loop: str = "mpc"
    """which loop runs it: "mpc" (:func:`mpc_loop`), "dyna" (:func:`dyna_loop`) or "mbmf_ft" (:func:`mbmf_ft_loop`)"""
    loop_kwargs: Callable[[Any], dict[str, Any]] = _mpc_loop_kwargs
    """config -> the loop's keyword arguments (its schedule)"""


ALGORITHMS: dict[str, Algorithm] = {
    "pets": Algorithm(PETSConfig, make_pets),
    "mbmf": Algorithm(MBMFConfig, make_mbmf),
    "mbpo": Algorithm(MBPOConfig, make_mbpo, "dyna", mbpo_loop_kwargs),
    "sac": Algorithm(SACAgentConfig, make_sac, "dyna", sac_loop_kwargs),
    "mbmf-ft": Algorithm(MBMFFTConfig, make_mbmf_ft, "mbmf_ft", mbmf_ft_loop_kwargs),
}


def _loop(algo: str) -> Callable[..., list[EpisodeResult]]:
    """The loop function of ``algo``, looked up when called (so tests may replace it)."""
    return {"mpc": mpc_loop, "dyna": dyna_loop, "mbmf_ft": mbmf_ft_loop}[ALGORITHMS[algo].loop]


CHECKPOINT_VERSION = 1


def make_config(algo: str, *, tier: Tier | None = None, overrides: Mapping[str, Any] | None = None):
    """The config of ``algo`` for a compute tier, with ``overrides`` (field name -> value) applied."""
    check_choice("algo", algo, tuple(ALGORITHMS))
    config = ALGORITHMS[algo].config_cls.for_budget(tier)
    fields = {f.name: f for f in dataclasses.fields(config)}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise ValueError(f"config: {algo} has no setting {key!r}; expected one of {', '.join(fields)}")
        default = getattr(config, key)
        if isinstance(default, tuple) and isinstance(value, str):
            try:
                value = tuple(int(v) for v in value.split(","))
            except ValueError as err:
                raise ValueError(f"config: {key} expects comma-separated integers, got {value!r}") from err
        elif isinstance(default, bool) and isinstance(value, str):
            if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"config: {key} expects true or false, got {value!r}")
            value = value.strip().lower() in ("true", "1", "yes")
        elif isinstance(value, str) and not isinstance(default, str):
            try:
                value = type(default)(value)
            except ValueError as err:
                raise ValueError(f"config: {key} expects a {type(default).__name__}, got {value!r}") from err
        setattr(config, key, value)
    if overrides:
        config = dataclasses.replace(config)  # re-runs the config's own checks, if it has any
    return config


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


def _rng_state(agent) -> dict[str, Any]:
    if not isinstance(agent, MPCAgent):  # the other agents keep their generators in their state_dict
        return {"torch": torch.get_rng_state()}
    return {"torch": torch.get_rng_state(), "agent": agent.generator.get_state(),
            "fit": agent.fit_generator.get_state(), "planner": agent.planner.generator.get_state()}


def _set_rng_state(agent, state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if not isinstance(agent, MPCAgent):
        return
    agent.generator.set_state(state["agent"])
    agent.fit_generator.set_state(state["fit"])
    agent.planner.generator.set_state(state["planner"])


def _agent_state(agent) -> dict[str, Any]:
    """What the checkpoint keeps of an agent: the model of an MPC agent, the whole state of the others."""
    if isinstance(agent, MPCAgent):
        return {"model": agent.model.state_dict()}
    return {"agent": agent.state_dict()}


def _load_agent_state(agent, ckpt: Mapping[str, Any]) -> None:
    if "agent" in ckpt:
        agent.load_state_dict(ckpt["agent"])
    else:
        agent.model.load_state_dict(ckpt["model"])
        agent.model.eval()


def _seed_episodes(config, rows: list[dict[str, float]]) -> int:
    """How many of the first episodes acted at random (seeded D_real), for the plot."""
    if hasattr(config, "seed_steps"):  # the Dyna agents seed by env steps
        return sum(1 for row in rows if row["env_steps"] <= config.seed_steps)
    return min(config.seed_episodes, len(rows))


def load_run(run_dir: str | Path, *, device: str | torch.device | None = "cpu"):
    """Rebuild the env, agent and D_real of a run from its checkpoint. Returns (env, agent, buffer, checkpoint)."""
    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"run_dir: no checkpoint.pt in {run_dir} (train a run there first)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    device = resolve_device(device)
    algo = ALGORITHMS[ckpt["algo"]]
    config = algo.config_cls(**ckpt["config"])
    env = make_env(ckpt["env_id"], render_mode="rgb_array", **ckpt.get("env_kwargs", {}))
    agent = algo.build(env, ckpt["env_id"], config, device=device, seed=ckpt["seed"])
    _load_agent_state(agent, ckpt)
    buffer = ReplayBuffer(env.observation_space.shape[0], env.action_space.shape[0], device=device)
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
) -> list[dict[str, float]]:
    """Train ``algo`` on ``env_id`` for ``episodes`` episodes, writing the run directory ``out``.

    Returns the rows of ``returns.csv``. With ``resume=True`` continues from ``out/checkpoint.pt``
    (the config stored there wins). ``env_kwargs`` go to ``make_env`` (e.g. ``max_episode_steps``).
    A Ctrl-C saves D_real so far and the checkpoint of the last finished episode, then re-raises;
    a model fit or a learner whose loss diverges (NaN/inf) keeps the last good checkpoint and raises
    ``FloatingPointError``.
    """
    check_choice("algo", algo, tuple(ALGORITHMS))
    episodes = check_positive_int("episodes", episodes)
    seed = int(seed)
    device = resolve_device(device)
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not (resume or overwrite):
        raise FileExistsError(
            f"out: {out} already holds a run; pass resume=True (--resume) to continue it "
            "or overwrite=True (--overwrite) to start again"
        )
    out.mkdir(parents=True, exist_ok=True)

    if resume and ckpt_path.exists():
        env, agent, buffer, ckpt = load_run(out, device=device)
        if ckpt["algo"] != algo or ckpt["env_id"] != env_id:
            raise ValueError(f"resume: {out} holds a {ckpt['algo']} run on {ckpt['env_id']}, not {algo} on {env_id}")
        config, seed = ALGORITHMS[algo].config_cls(**ckpt["config"]), ckpt["seed"]
        env_kwargs = ckpt.get("env_kwargs", {})
        rows, start_episode = list(ckpt["returns"]), ckpt["episodes_done"]
        _set_rng_state(agent, ckpt["rng"])
        seed_agent_state = ckpt.get("seed_agent_rng")
    else:
        config = make_config(algo, tier=tier, overrides=overrides)
        env = make_env(env_id, render_mode="rgb_array" if record else None, **dict(env_kwargs or {}))
        agent = ALGORITHMS[algo].build(env, env_id, config, device=device, seed=seed)
        buffer = ReplayBuffer(env.observation_space.shape[0], env.action_space.shape[0], device=device)
        rows, start_episode, seed_agent_state = [], 0, None

    from mbrl_course.agents.mpc import RandomAgent  # the agent that seeds D_real

    seed_agent = RandomAgent(env.action_space, seed=seed)
    if seed_agent_state is not None:
        seed_agent.rng.bit_generator.state = seed_agent_state
    clock0 = time.perf_counter() - (rows[-1]["wall_s"] if rows else 0.0)

    def checkpoint(episodes_done: int) -> None:
        _atomic_save({
            "version": CHECKPOINT_VERSION, "algo": algo, "env_id": env_id, "seed": seed,
            "config": dataclasses.asdict(config), "env_kwargs": dict(env_kwargs or {}), "episodes_done": episodes_done, "returns": rows,
            **_agent_state(agent), "buffer": buffer.state_dict(), "rng": _rng_state(agent),
            "seed_agent_rng": seed_agent.rng.bit_generator.state,
        }, ckpt_path)

    def plot() -> None:
        from mbrl_course.viz import plot_learning_curve

        plot_learning_curve(rows, out / "learning_curve.png", title=f"{algo.upper()} on {env_id} (seed {seed})",
                            label=algo, seed_episodes=_seed_episodes(config, rows))

    bar = tqdm(total=episodes, initial=start_episode, desc=f"{algo} {env_id}", unit="episode",
               disable=not progress, file=sys.stderr)

    def on_episode(result: EpisodeResult) -> None:
        steps = int(rows[-1]["env_steps"]) if rows else 0
        rows.append({"episode": result.episode, "return": result.ret, "env_steps": steps + result.steps,
                     "wall_s": time.perf_counter() - clock0})
        _write_returns(rows, out / "returns.csv")
        plot()
        checkpoint(result.episode + 1)
        if result.frames:
            try:
                from mbrl_course.viz import save_gif

                save_gif(result.frames, out / "rollout.gif", fps=env.metadata.get("render_fps", 30))
            except Exception as err:  # a GIF is a nicety; never lose a run over it
                warnings.warn(f"could not write rollout.gif: {err}", stacklevel=2)
        bar.update(1)
        bar.set_postfix(ret=f"{result.ret:.1f}")

    try:
        _loop(algo)(env, agent, buffer, episodes=episodes, seed=seed, start_episode=start_episode,
                    on_episode=on_episode, record_last=record, seed_agent=seed_agent,
                    **ALGORITHMS[algo].loop_kwargs(config))
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
    actor = agent.evaluation_actor() if hasattr(agent, "evaluation_actor") else agent
    returns = []
    for episode in tqdm(range(episodes), desc="evaluate", unit="episode", disable=not progress, file=sys.stderr):
        returns.append(run_episode(env, actor, None, episode=episode, seed=seed).ret)
    env.close()
    return returns


def summarize(returns: list[float]) -> str:
    """``mean ± std over n episodes`` for printing."""
    arr = np.asarray(returns, dtype=float)
    return f"{arr.mean():.1f} ± {arr.std():.1f} over {arr.size} episodes"


__all__ = ["ALGORITHMS", "make_config", "train", "evaluate", "load_run", "summarize", "budget"]
