"""The dynamics model update of both loops: ψ := argmin_ψ L(f_ψ(·, ·), D_real).

:func:`fit_model` trains either model on a :class:`~mbrl_course.data.ReplayBuffer`:

1. split D_real into a training part and a holdout part, refit the model's normalisers on the training part;
2. ensembles (``GaussianEnsemble``): member k trains on its own bootstrap resample of the training
   part (drawn once per call, reshuffled every epoch), so the members differ where data are scarce;
   the loss is the summed Gaussian NLL of :meth:`GaussianEnsemble.loss`.
   Deterministic models (``DeltaMLP``): plain shuffled minibatches and :meth:`DeltaMLP.loss`;
3. after every epoch, the holdout MSE per member; a member's parameters are remembered whenever its
   holdout MSE improves by more than ``improvement_threshold`` (relative); training stops after
   ``patience`` epochs without any member improving, and every member gets back its best parameters;
4. the elites: the ``num_elites`` members with the lowest holdout MSE.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from mbrl_course._checks import check_positive_float, check_positive_int
from mbrl_course.data import ReplayBuffer

__all__ = ["FitReport", "fit_model", "train_model"]


@dataclass
class FitReport:
    """What one :func:`fit_model` call did."""

    train_loss: list[float]
    """mean of ``model.loss`` over each epoch's minibatches"""
    val_mse: list[float]
    """holdout MSE (normalised units) after each epoch, averaged over members; empty without a holdout set"""
    epochs_run: int
    """epochs trained (fewer than asked after early stopping or ``max_updates``)"""
    elites: list[int] | None
    """the elite members after training (ensembles), None for deterministic models"""
    updates: int = 0
    """gradient steps taken"""
    best_val_mse: list[float] | None = None
    """per member, the holdout MSE of the parameters kept; None without a holdout set"""
    val_indices: torch.Tensor | None = None
    """the buffer slots held out (for plots and checks); None without a holdout set"""
    member_scores: list[float] | None = None
    """per member, the holdout MSE of the parameters kept (the training MSE without a holdout set):
    what the elites are chosen by"""


def _rand_on(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    where = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=where).to(device)


def fit_model(model, buffer: ReplayBuffer, **options) -> FitReport:
    """ψ := argmin_ψ L(f_ψ(·,·), D_real): ``model.fit(buffer, **options)``, for any model of the contract
    (:class:`~mbrl_course.models.DynamicsModel`); the options are the model's own."""
    return model.fit(buffer, **options)


def train_model(
    model,
    buffer: ReplayBuffer,
    *,
    members: int | None,
    epochs: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 5e-5,
    val_fraction: float = 0.2,
    patience: int = 5,
    max_updates: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    improvement_threshold: float = 0.01,
    optimizer: torch.optim.Optimizer | None = None,
) -> FitReport:
    """ψ := argmin_ψ L(f_ψ, D_real) by Adam on minibatches, with holdout early stopping.

    Args:
        model: a network with ``loss(batch)``, ``eval_mse(batch) -> (K,)``, ``fit_normalizers(batch)``.
        members: K for an ensemble whose parameters carry a leading member axis K (member k trains on its
            own bootstrap resample and keeps its own best parameters); None for one network.
        buffer: D_real; the model's device should match the buffer's.
        epochs: at most this many passes over the training part.
        batch_size: transitions per minibatch (per member for ensembles).
        lr: Adam's learning rate (ignored when ``optimizer`` is given).
        weight_decay: L2 penalty on the weight matrices (not on biases or log-variance bounds).
        val_fraction: share of D_real held out for early stopping and elites (0: none, train all epochs).
        patience: stop after this many epochs in which no member's holdout MSE improved.
        max_updates: stop after this many gradient steps in total (None: no limit).
        generator: torch generator for the split, the bootstrap and the shuffles.
        progress: show a tqdm progress bar over epochs.
        improvement_threshold: relative decrease of holdout MSE that counts as an improvement.
        optimizer: reuse an optimizer over ``model.parameters()`` across calls (default: a fresh Adam).
    Returns:
        a :class:`FitReport`.
    Raises:
        FloatingPointError: the loss became NaN/inf; the model is restored to its state before the call.
    """
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    lr = check_positive_float("lr", lr)
    weight_decay = check_positive_float("weight_decay", weight_decay, allow_zero=True)
    patience = check_positive_int("patience", patience)
    if max_updates is not None:
        max_updates = check_positive_int("max_updates", max_updates)
    improvement_threshold = check_positive_float("improvement_threshold", improvement_threshold, allow_zero=True)
    if buffer.obs_dim != model.obs_dim or buffer.act_dim != model.act_dim:
        raise ValueError(f"buffer: holds obs_dim={buffer.obs_dim}, act_dim={buffer.act_dim}, the model expects "
                         f"obs_dim={model.obs_dim}, act_dim={model.act_dim}")
    if len(buffer) == 0:
        raise ValueError("buffer: expected at least one transition to fit on, got an empty buffer")
    device = model.device
    is_ensemble = members is not None
    K = check_positive_int("members", members) if is_ensemble else 1

    # 1. split, refit normalisers on the training part
    train_idx, val_idx = buffer.split(val_fraction, generator=generator)
    has_val = val_idx.numel() > 0
    initial_state = copy.deepcopy(model.state_dict())
    dtype = model.dtype
    model.fit_normalizers(buffer.batch(train_idx, check=False).to(device, dtype))
    val_batch = buffer.batch(val_idx, check=False).to(device, dtype) if has_val else None

    # 2. member k's data: a bootstrap resample of the training part (DeltaMLP: the training part itself)
    member_idx = buffer.bootstrap(K, train_idx, generator=generator) if is_ensemble else train_idx[None]
    n = member_idx.shape[1]

    if optimizer is None:
        decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
        rest = [p for name, p in model.named_parameters() if not name.endswith("weight")]
        optimizer = torch.optim.Adam(
            [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=lr
        )

    best_mse = model.eval_mse(val_batch) if has_val else None
    best_params = {name: p.detach().clone() for name, p in model.named_parameters()} if has_val else None

    report = FitReport(train_loss=[], val_mse=[], epochs_run=0, elites=None)
    epochs_without_improvement = 0
    bar = tqdm(range(epochs), desc="fit model", disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        # one whole-epoch shuffle per member: argsort of uniform noise permutes each row independently
        order = member_idx.gather(1, torch.argsort(_rand_on((K, n), generator, member_idx.device), dim=1))
        total = torch.zeros((), device=device, dtype=dtype)
        steps = 0
        for start in range(0, n, batch_size):
            idx = order[:, start:start + batch_size]
            batch = buffer.batch(idx if is_ensemble else idx[0], check=False).to(device, dtype)
            loss = model.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            steps += 1
            report.updates += 1
            if max_updates is not None and report.updates >= max_updates:
                break
        model.eval()
        epoch_loss = float(total) / steps
        report.train_loss.append(epoch_loss)
        report.epochs_run = epoch + 1
        if not math.isfinite(epoch_loss):
            model.load_state_dict(initial_state)
            raise FloatingPointError(
                f"fit_model: the training loss became {epoch_loss} in epoch {epoch + 1}; the model was restored "
                f"to its state before this call (try a smaller lr, or check the data for outliers)"
            )

        # 3. holdout early stopping, member by member
        if has_val:
            mse = model.eval_mse(val_batch)
            if not bool(torch.isfinite(mse).all()):
                model.load_state_dict(initial_state)
                raise FloatingPointError(
                    f"fit_model: the holdout MSE became non-finite in epoch {epoch + 1}; the model was restored "
                    f"to its state before this call"
                )
            report.val_mse.append(float(mse.mean()))
            improved = (best_mse - mse) / best_mse.abs().clamp_min(1e-12) > improvement_threshold
            if bool(improved.any()):
                epochs_without_improvement = 0
                best_mse = torch.where(improved, mse, best_mse)
                for name, p in model.named_parameters():
                    if is_ensemble and p.dim() > 0 and p.shape[0] == K:
                        best_params[name][improved] = p.detach()[improved]
                    else:
                        best_params[name].copy_(p.detach())
            else:
                epochs_without_improvement += 1
            bar.set_postfix(loss=f"{epoch_loss:.4g}", val_mse=f"{report.val_mse[-1]:.4g}")
        else:
            bar.set_postfix(loss=f"{epoch_loss:.4g}")
        if epochs_without_improvement >= patience:
            break
        if max_updates is not None and report.updates >= max_updates:
            break
    bar.close()

    if has_val:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(best_params[name])
        report.best_val_mse = best_mse.tolist()
        report.val_indices = val_idx
    # 4. what the elites are chosen by: holdout MSE (training MSE when there is no holdout set)
    score = best_mse if has_val else model.eval_mse(buffer.batch(train_idx, check=False).to(device, dtype))
    report.member_scores = score.tolist()
    return report
