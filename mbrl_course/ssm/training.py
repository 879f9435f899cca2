"""Training a VSSM: maximise the ELBO L(λ), λ = {ψ, θ}, with Adam on reparameterised gradients.

Each step: (a mini-batch of) sequences, N sample paths s̃_{0:T} ~ q_ψ, the loss -L̃(λ) divided by the
number of observed steps, one Adam step on ψ and θ together (or only one of them). A checkpoint (model,
posterior, optimiser, generator, history) is written every ``checkpoint_every`` steps and at the end, and a
run resumes from it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mbrl_course._checks import check_choice, check_positive_float, check_positive_int
from mbrl_course.budget import by_budget
from mbrl_course.ssm.elbo import KL_ESTIMATORS, _check_pair, elbo_terms
from mbrl_course.ssm.generative import GenerativeModel, Sequences, check_sequences
from mbrl_course.ssm.posteriors import Posterior

TRAINABLE = ("both", "posterior", "model")


@dataclass
class TrainConfig:
    """How :func:`train_vssm` climbs the ELBO; ``num_steps`` defaults to the compute tier's (see :func:`~mbrl_course.by_budget`)."""

    num_steps: int = field(default_factory=lambda: by_budget(smoke=30, default=1500, full=20000))
    """Adam steps (smoke 30, default 1500, full 20000)"""
    learning_rate: float = 3e-3
    """Adam's step size"""
    num_samples: int = 1
    """N, sample paths per sequence and step"""
    kl: str = "analytic"
    """"analytic" or "mc" (see :func:`~mbrl_course.ssm.estimate_elbo`)"""
    batch_size: int | None = None
    """sequences per step, drawn without replacement; None: all of them"""
    trainable: str = "both"
    """"both" (ψ and θ), "posterior" (ψ only: θ fixed, e.g. at the truth) or "model" (θ only)"""
    grad_clip: float | None = 10.0
    """clip the gradient's global norm to this (None: no clipping)"""
    checkpoint_every: int = 100
    """write the checkpoint every this many steps (and at the end)"""
    progress: bool = True
    """show a tqdm progress bar"""
    seed: int = 0
    """seed of the generator for the mini-batches and the ε_t"""


@dataclass
class TrainResult:
    """What :func:`train_vssm` returns."""

    history: list[float]
    """L̃(λ) per observed time step (averaged over the batch), before each Adam step, all steps so far"""
    steps: int
    """Adam steps done in total (including those before a resume)"""
    resumed_from: int
    """the step the run resumed from (0: a fresh run)"""


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (a temporary file, then a rename): a crash keeps the last checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)



def ascent_steps(objective: Callable[[int], torch.Tensor], parameters: list[torch.Tensor],
                 optimizer: torch.optim.Optimizer, steps: range, history: list[float], *, grad_clip: float | None,
                 progress: bool, desc: str, postfix: str = "elbo_per_step",
                 checkpoint: Callable[[int], None] | None = None, checkpoint_every: int = 100,
                 checkpoint_path: Path | None = None) -> None:
    """Gradient ascent on a stochastic objective, the loop every trainer of :mod:`mbrl_course.ssm` shares.

    For each step number in ``steps``: L̃ = ``objective(step)`` (a scalar to maximise, e.g. the ELBO per observed
    step of a fresh mini-batch), one optimiser step on −L̃ (gradients clipped to the global norm ``grad_clip``
    unless None), L̃ appended to ``history``, a tqdm bar (``desc``; ``progress`` False hides it), and
    ``checkpoint(step + 1)`` every ``checkpoint_every`` steps. A non-finite L̃ raises ``FloatingPointError``
    naming ``checkpoint_path``, the last checkpoint written.
    """
    bar = tqdm(steps, desc=desc, disable=not progress, initial=steps.start, total=steps.stop)
    for step in bar:
        value_t = objective(step)
        optimizer.zero_grad()
        (-value_t).backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()
        value = float(value_t.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"{desc}: the objective became non-finite at step {step}; lower "
                                     f"config.learning_rate (the last checkpoint is at {checkpoint_path})")
        history.append(value)
        bar.set_postfix({postfix: f"{value:.4g}"})
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:
            checkpoint(step + 1)


def train_vssm(
    model: GenerativeModel,
    posterior: Posterior,
    observations: torch.Tensor,
    mask: torch.Tensor | None = None,
    controls: torch.Tensor | None = None,
    config: TrainConfig | None = None,
    *,
    checkpoint_path: str | os.PathLike | None = None,
    resume: bool = True,
) -> TrainResult:
    """Maximise L(λ) = Σ_t E_q[log p(y_t | s_t) - log q(s_t | ·) / p(s_t | s_{t-1}, θ)] over λ = {ψ, θ} with Adam.

    ``observations: (B, T, dy)``, ``mask: (B, T)``, ``controls: (B, T, du)`` as in
    :func:`~mbrl_course.ssm.estimate_elbo`; ``config`` a :class:`TrainConfig` (None: the tier's defaults).
    ``checkpoint_path``: where the checkpoint goes (every ``config.checkpoint_every`` steps and at the end);
    with ``resume`` True and the file there, the run continues from it up to ``config.num_steps`` in total
    (a missing file starts a fresh run). The modules are trained in place; returns a :class:`TrainResult`.
    """
    cfg = config or TrainConfig()
    num_steps = check_positive_int("config.num_steps", cfg.num_steps)
    lr = check_positive_float("config.learning_rate", cfg.learning_rate)
    N = check_positive_int("config.num_samples", cfg.num_samples)
    check_choice("config.kl", cfg.kl, KL_ESTIMATORS)
    check_choice("config.trainable", cfg.trainable, TRAINABLE)
    every = check_positive_int("config.checkpoint_every", cfg.checkpoint_every)
    _check_pair(model, posterior, observations)
    seq = check_sequences(observations, mask, controls, model.obs_dim, model.control_dim)
    B = seq.mask.shape[0]
    batch_size = B if cfg.batch_size is None else min(check_positive_int("config.batch_size", cfg.batch_size), B)
    params = ([] if cfg.trainable == "model" else list(posterior.parameters())) + (
        [] if cfg.trainable == "posterior" else list(model.parameters()))
    if not params:
        raise ValueError(f"config.trainable: {cfg.trainable!r} selects no parameters")
    frozen = [p for p in list(posterior.parameters()) + list(model.parameters())
              if p.requires_grad and all(p is not q for q in params)]  # the half not trained: no gradients
    optimizer = torch.optim.Adam(params, lr=lr)
    generator = torch.Generator(device=seq.observations.device).manual_seed(cfg.seed)
    history: list[float] = []
    start = 0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None and resume and path.exists():
        ckpt = torch.load(path, map_location=seq.observations.device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        posterior.load_state_dict(ckpt["posterior"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        history, start = list(ckpt["history"]), int(ckpt["step"])

    def checkpoint(step: int) -> None:
        if path is not None:
            save_checkpoint(path, {"model": model.state_dict(), "posterior": posterior.state_dict(),
                         "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                         "history": history, "step": step, "config": asdict(cfg)})

    def objective(step: int) -> torch.Tensor:
        if batch_size < B:
            idx = torch.randperm(B, generator=generator, device=generator.device)[:batch_size].to(seq.mask.device)
            batch = Sequences(seq.observations[idx], seq.mask[idx], None if seq.controls is None else seq.controls[idx])
        else:
            batch = seq
        sample = posterior.run(batch, N, generator)  # s̃_{0:T} ~ q_ψ, reparameterised
        result = elbo_terms(model, sample, batch, cfg.kl)
        return result.value.sum() / batch.mask.sum().clamp_min(1)  # L̃(λ) per observed step; ∇ flows through s̃

    for p in frozen:
        p.requires_grad_(False)
    try:
        ascent_steps(objective, params, optimizer, range(start, num_steps), history, grad_clip=cfg.grad_clip,
                     progress=cfg.progress, desc="train_vssm", checkpoint=checkpoint, checkpoint_every=every,
                     checkpoint_path=path)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    checkpoint(num_steps)
    return TrainResult(history, num_steps, start)
