"""Argument preparation for the filters: shapes, dtypes, devices and covariance checks.

Every public filter calls :func:`prepare_linear_gaussian` (or the smaller helpers) once at its
entry, so the numerical code below it can trust its inputs. Errors name the argument, the
slide's symbol for it, what was expected and what came.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mbrl_course._checks import as_tensor, check_finite

SUPPORTED_DTYPES = (torch.float32, torch.float64)


def observations_tensor(observations) -> torch.Tensor:
    """Check ``observations: (..., T, dy)``: float32/float64, T >= 1, NaN allowed (missing), no inf."""
    y = as_tensor("observations", observations)
    if not y.is_floating_point():
        raise TypeError(f"observations: expected a float32 or float64 tensor, got dtype {y.dtype}")
    if y.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"observations: expected dtype float32 or float64, got {y.dtype}")
    if y.ndim < 2:
        raise ValueError(
            f"observations: expected shape (..., T, dy) with at least 2 dimensions, got {tuple(y.shape)}"
        )
    if y.shape[-2] == 0:
        raise ValueError("observations: expected at least one time step (T >= 1), got T = 0")
    if y.shape[-1] == 0:
        raise ValueError("observations: expected an observation dimension dy >= 1, got dy = 0")
    if bool(torch.isinf(y).any()):
        raise ValueError(
            "observations: expected finite values or NaN (missing), got infinite entries"
        )
    return y


def like(name: str, value, reference: torch.Tensor) -> torch.Tensor:
    """Convert ``value`` to ``reference``'s dtype/device; a tensor of another dtype/device is refused."""
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
        if value.dtype != reference.dtype:
            raise TypeError(
                f"{name}: expected dtype {reference.dtype} (the dtype of the observations), "
                f"got {value.dtype}; convert it with .to({reference.dtype})"
            )
        if value.device != reference.device:
            raise ValueError(
                f"{name}: expected a tensor on {reference.device} (the observations' device), "
                f"got one on {value.device}"
            )
        out = value
    else:
        out = as_tensor(name, value, dtype=reference.dtype, device=reference.device)
    check_finite(name, out)
    return out


def vector(name: str, value, size: int | None, reference: torch.Tensor) -> torch.Tensor:
    """A ``(..., size)`` tensor."""
    x = like(name, value, reference)
    if x.ndim < 1 or (size is not None and x.shape[-1] != size):
        want = "(..., n)" if size is None else f"(..., {size})"
        raise ValueError(f"{name}: expected shape {want}, got {tuple(x.shape)}")
    return x


def matrix(name: str, value, rows: int, cols: int, reference: torch.Tensor) -> torch.Tensor:
    """A ``(..., rows, cols)`` tensor without a time axis."""
    x = like(name, value, reference)
    if x.ndim < 2 or tuple(x.shape[-2:]) != (rows, cols):
        raise ValueError(f"{name}: expected shape (..., {rows}, {cols}), got {tuple(x.shape)}")
    return x


def time_matrix(name: str, value, rows: int, cols: int, num_steps: int, reference: torch.Tensor) -> torch.Tensor:
    """A fixed ``(rows, cols)`` matrix or a time-varying ``(..., T, rows, cols)`` one.

    Returns ``(..., T or 1, rows, cols)``: a time axis of size 1 is shared by all steps.
    """
    x = like(name, value, reference)
    if x.ndim < 2 or tuple(x.shape[-2:]) != (rows, cols):
        raise ValueError(
            f"{name}: expected shape ({rows}, {cols}) or (..., T, {rows}, {cols}) with T = {num_steps}, "
            f"got {tuple(x.shape)}"
        )
    if x.ndim == 2:
        return x.unsqueeze(0)
    if x.shape[-3] not in (num_steps, 1):
        raise ValueError(
            f"{name}: expected shape ({rows}, {cols}) or (..., T, {rows}, {cols}) with T = {num_steps} "
            f"(or 1, shared by all steps) on the time axis, got {tuple(x.shape)}; for a batch of fixed "
            f"matrices add a time axis of size 1 with .unsqueeze(-3)"
        )
    return x


def check_covariance(name: str, cov: torch.Tensor, *, definite: bool) -> None:
    """Refuse non-symmetric matrices and, with ``definite``, non-positive-definite ones.

    Without ``definite`` positive *semi*-definite matrices pass (smallest eigenvalue
    >= -sqrt(eps) * largest |entry|): an exactly known initial state or a noise-free state
    component is a legitimate model.
    """
    with torch.no_grad():
        c = cov.detach()
        eps = torch.finfo(c.dtype).eps
        tol = math.sqrt(eps)
        scale = c.abs().amax(dim=(-2, -1)).clamp_min(torch.finfo(c.dtype).tiny)
        asym = (c - c.mT).abs().amax(dim=(-2, -1))
        bad = asym > tol * scale
        def where(index: tuple[int, ...]) -> str:
            return "the matrix" if bad.numel() == 1 else f"the matrix at index {index}"

        if bool(bad.any()):
            index = tuple(int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name}: expected symmetric matrices, {where(index)} has "
                f"max |A - A^T| = {float(asym[index]):.3g} (relative to its largest entry "
                f"{float(scale[index]):.3g})"
            )
        sym = 0.5 * (c + c.mT)
        _, info = torch.linalg.cholesky_ex(sym)
        failed = info != 0
        if not bool(failed.any()):
            return
        if definite:
            index = tuple(int(i) for i in failed.nonzero()[0])
            low = float(torch.linalg.eigvalsh(sym[index]).min())
            raise ValueError(
                f"{name}: expected positive-definite matrices, {where(index)} has "
                f"smallest eigenvalue {low:.3g}"
            )
        low = torch.linalg.eigvalsh(sym[failed]).amin(dim=-1)
        neg = low < -tol * scale[failed]
        if bool(neg.any()):
            index = tuple(int(i) for i in failed.nonzero()[int(neg.nonzero()[0, 0])])
            raise ValueError(
                f"{name}: expected positive semi-definite matrices, {where(index)} has "
                f"a negative eigenvalue {float(low[neg][0]):.3g}"
            )


def broadcast_batch(named_shapes: list[tuple[str, tuple[int, ...]]]) -> torch.Size:
    """Broadcast the batch shapes of all arguments, naming the one that does not fit."""
    shape = torch.Size([])
    seen = []
    for name, s in named_shapes:
        try:
            shape = torch.broadcast_shapes(shape, s)
        except RuntimeError as err:
            others = ", ".join(f"{n} {tuple(t)}" for n, t in seen)
            raise ValueError(
                f"{name}: its batch dimensions {tuple(s)} do not broadcast with those of {others}"
            ) from err
        seen.append((name, s))
    return shape


@dataclass
class LinearGaussianArgs:
    """Checked inputs of a linear-Gaussian filter, every matrix with a time axis of size T or 1."""

    observations: torch.Tensor
    """y_t with missing entries set to 0: (..., T, dy)"""
    mask: torch.Tensor | None
    """True where y_t's entry is observed: (..., T, dy); None when nothing is missing"""
    initial_mean: torch.Tensor
    """m_0: (..., dx)"""
    initial_cov: torch.Tensor
    """S_0: (..., dx, dx)"""
    transition_matrix: torch.Tensor
    """E_t: (..., T|1, dx, dx)"""
    transition_cov: torch.Tensor
    """F_t: (..., T|1, dx, dx)"""
    emission_matrix: torch.Tensor
    """C: (..., T|1, dy, dx)"""
    emission_cov: torch.Tensor
    """D: (..., T|1, dy, dy)"""
    offsets: torch.Tensor | None
    """B u_t: (..., T, dx), or None without controls"""
    batch_shape: torch.Size
    """broadcast batch shape of all arguments"""

    @property
    def num_steps(self) -> int:
        return self.observations.shape[-2]

    @property
    def state_dim(self) -> int:
        return self.initial_mean.shape[-1]

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[-1]


def prepare_linear_gaussian(
    observations,
    initial_mean,
    initial_cov,
    transition_matrix,
    transition_cov,
    emission_matrix,
    emission_cov,
    controls=None,
    control_matrix=None,
    *,
    check_covariances: bool = True,
) -> LinearGaussianArgs:
    """Check and normalise the arguments of the linear-Gaussian filters and smoothers."""
    y = observations_tensor(observations)
    num_steps, dy = y.shape[-2], y.shape[-1]
    m0 = vector("initial_mean (m_0)", initial_mean, None, y)
    dx = m0.shape[-1]
    if dx == 0:
        raise ValueError("initial_mean (m_0): expected a state dimension dx >= 1, got 0")
    S0 = matrix("initial_cov (S_0)", initial_cov, dx, dx, y)
    E = time_matrix("transition_matrix (E_t)", transition_matrix, dx, dx, num_steps, y)
    F = time_matrix("transition_cov (F_t)", transition_cov, dx, dx, num_steps, y)
    C = time_matrix("emission_matrix (C)", emission_matrix, dy, dx, num_steps, y)
    D = time_matrix("emission_cov (D)", emission_cov, dy, dy, num_steps, y)
    if check_covariances:
        check_covariance("initial_cov (S_0)", S0, definite=False)
        check_covariance("transition_cov (F_t)", F, definite=False)
        check_covariance("emission_cov (D)", D, definite=True)
    shapes = [
        ("observations", y.shape[:-2]),
        ("initial_mean (m_0)", m0.shape[:-1]),
        ("initial_cov (S_0)", S0.shape[:-2]),
        ("transition_matrix (E_t)", E.shape[:-3]),
        ("transition_cov (F_t)", F.shape[:-3]),
        ("emission_matrix (C)", C.shape[:-3]),
        ("emission_cov (D)", D.shape[:-3]),
    ]
    offsets = None
    if (controls is None) != (control_matrix is None):
        given, missing = ("controls", "control_matrix") if controls is not None else ("control_matrix", "controls")
        raise ValueError(f"{missing}: required when {given} is given (the control term B u_t needs both)")
    if controls is not None:
        u = like("controls (u_t)", controls, y)
        if u.ndim < 2 or u.shape[-2] != num_steps:
            raise ValueError(
                f"controls (u_t): expected shape (..., T, du) with T = {num_steps}, got {tuple(u.shape)}"
            )
        B = time_matrix("control_matrix (B)", control_matrix, dx, u.shape[-1], num_steps, y)
        shapes += [("controls (u_t)", u.shape[:-2]), ("control_matrix (B)", B.shape[:-3])]
        offsets = (B @ u.unsqueeze(-1)).squeeze(-1)
    batch_shape = broadcast_batch(shapes)
    missing = torch.isnan(y)
    mask = None
    if bool(missing.any()):
        mask = ~missing
        y = torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
    return LinearGaussianArgs(
        observations=y,
        mask=mask,
        initial_mean=m0,
        initial_cov=0.5 * (S0 + S0.mT),
        transition_matrix=E,
        transition_cov=0.5 * (F + F.mT),
        emission_matrix=C,
        emission_cov=0.5 * (D + D.mT),
        offsets=offsets,
        batch_shape=batch_shape,
    )
