"""Argument preparation for the filters: shapes, dtypes, devices and covariance checks.

A :class:`~mbrl_course.filters.LinearGaussianSSM` checks its parameters once, when it is built;
every linear-Gaussian filter then checks one call's data against it with
:func:`prepare_filter_inputs`, so the numerical code below can trust its inputs. Errors name the argument, the
slide's symbol for it, what was expected and what came.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mbrl_course._checks import as_tensor, check_finite

if TYPE_CHECKING:
    from mbrl_course.filters.params import LinearGaussianSSM

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


def like(name: str, value, reference: torch.Tensor, reference_name: str = "the observations'") -> torch.Tensor:
    """Convert ``value`` to ``reference``'s dtype/device; a tensor of another dtype/device is refused.

    ``reference_name`` says in an error whose dtype and device these are.
    """
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")
        if value.dtype != reference.dtype:
            raise TypeError(
                f"{name}: expected dtype {reference.dtype} ({reference_name} dtype), "
                f"got {value.dtype}; convert it with .to({reference.dtype})"
            )
        if value.device != reference.device:
            raise ValueError(
                f"{name}: expected a tensor on {reference.device} ({reference_name} device), "
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
class FilterInputs:
    """One call's checked inputs of a linear-Gaussian filter: the model and the data it filters."""

    model: LinearGaussianSSM
    """θ with every matrix on a time axis of size T or 1, ``(..., T|1, r, c)``, covariances symmetrised"""
    observations: torch.Tensor
    """y_t, NaN where missing: (..., T, dy)"""
    mask: torch.Tensor | None
    """True where y_t's entry is observed: (..., T, dy); None when nothing is missing"""
    offsets: torch.Tensor | None
    """B u_t: (..., T, dx), or None without controls"""
    batch_shape: torch.Size
    """broadcast batch shape of the model, the observations and the controls"""

    @property
    def num_steps(self) -> int:
        return self.observations.shape[-2]

    @property
    def state_dim(self) -> int:
        return self.model.state_dim

    @property
    def observed_values(self) -> torch.Tensor:
        """y_t with missing entries set to 0: (..., T, dy)."""
        if self.mask is None:
            return self.observations
        return torch.where(self.mask, self.observations, torch.zeros((), dtype=self.observations.dtype,
                                                                     device=self.observations.device))


def control_offsets(model: LinearGaussianSSM, controls, num_steps: int) -> torch.Tensor | None:
    """B u_t for ``controls: (..., T, du)`` u_t under ``model`` (matrices on a time axis of size T or 1).

    Returns ``(..., T, dx)``, or None without controls; refuses controls for a model without B.
    """
    if controls is None:
        return None
    if model.control_matrix is None:
        raise ValueError("controls: given, but the model has no control_matrix (B) for the term B u_t")
    u = like("controls (u_t)", controls, model.initial_mean, "the model's")
    if u.ndim < 2 or u.shape[-2:] != (num_steps, model.control_dim):
        raise ValueError(f"controls (u_t): expected shape (..., T, du) = (..., {num_steps}, {model.control_dim}), "
                         f"got {tuple(u.shape)}")
    return (model.control_matrix @ u.unsqueeze(-1)).squeeze(-1)


def prepare_filter_inputs(model: LinearGaussianSSM, observations, controls=None) -> FilterInputs:
    """Check the data of one call against a (validated) model: dtype, device, dy, T, controls, batch."""
    y = observations_tensor(observations)
    ref = model.initial_mean
    if y.dtype != ref.dtype:
        raise TypeError(f"observations: expected dtype {ref.dtype} (the model's dtype), got {y.dtype}; "
                        f"convert one of them with .to()")
    if y.device != ref.device:
        raise ValueError(f"observations: expected a tensor on {ref.device} (the model's device), got one on {y.device}")
    if y.shape[-1] != model.obs_dim:
        raise ValueError(f"observations: expected shape (..., T, {model.obs_dim}) (dy of emission_matrix C), "
                         f"got {tuple(y.shape)}")
    num_steps = y.shape[-2]
    stepped = model.for_steps(num_steps)
    shapes = [("the model", model.batch_shape), ("observations", y.shape[:-2])]
    offsets = control_offsets(stepped, controls, num_steps)
    if offsets is not None:
        shapes.append(("controls (u_t)", offsets.shape[:-2]))
    batch_shape = broadcast_batch(shapes)
    missing = torch.isnan(y)
    mask = ~missing if bool(missing.any()) else None
    return FilterInputs(model=stepped, observations=y, mask=mask, offsets=offsets, batch_shape=batch_shape)
