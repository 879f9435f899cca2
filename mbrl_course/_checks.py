"""Argument checks shared by the package: errors a student can act on.

Each check raises ``ValueError`` (or ``TypeError`` for a wrong type) naming the argument,
what was expected and what came. They are cheap and meant for public entry points, not
for inner loops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def as_tensor(
    name: str,
    value,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Convert ``value`` (tensor, array, list or number) to a tensor, or say what was wrong."""
    if isinstance(value, torch.Tensor):
        out = value
    else:
        try:
            out = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"{name}: expected a tensor, array or number, got {type(value).__name__}"
            ) from err
    if dtype is not None and not out.is_floating_point() and dtype.is_floating_point:
        out = out.to(dtype)
    elif dtype is not None:
        out = out.to(dtype)
    if device is not None:
        out = out.to(device)
    return out


def check_shape(name: str, tensor: torch.Tensor, expected: Sequence[int | None | str]) -> None:
    """Check ``tensor.shape`` against ``expected``; ``None`` or a string name matches any size.

    >>> check_shape("actions", torch.zeros(4, 3, 1), ("N", 3, 1))
    """
    shape = tuple(tensor.shape)
    ok = len(shape) == len(expected) and all(
        e is None or isinstance(e, str) or e == s for e, s in zip(expected, shape)
    )
    if not ok:
        parts = ["*" if e is None else str(e) for e in expected]
        want = "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
        raise ValueError(f"{name}: expected shape {want}, got {shape}")


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Refuse NaN or infinite entries."""
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name}: expected finite values, got {bad} NaN/inf entries")


def check_floating(name: str, tensor: torch.Tensor) -> None:
    """Refuse integer or boolean tensors where a floating dtype is needed."""
    if not tensor.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {tensor.dtype}")


def check_positive_int(name: str, value, *, allow_zero: bool = False) -> int:
    """Return ``value`` as an int, refusing booleans, fractions and non-positive numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    low = 0 if allow_zero else 1
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {value}")
    return int(value)


def check_positive_float(name: str, value, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, refusing NaN, inf and non-positive numbers."""
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name}: expected a number, got {value!r}") from err
    if not math.isfinite(out) or out < 0 or (out == 0 and not allow_zero):
        sign = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected a finite number {sign}, got {value!r}")
    return out


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    """Refuse a string outside ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``None`` or ``"auto"`` means CUDA when available, else CPU; a CUDA request without a GPU is refused."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} was asked for, but no CUDA GPU is available here; use 'cpu'")
    return dev
