"""Checks the assignments' test cells are built from: each raises :class:`GradingError` with a
message that says what is wrong (shape, bounds, values) in the student's terms.

- :func:`expect_tensor`, :func:`expect_shape`, :func:`expect_finite`, :func:`expect_in_bounds`,
  :func:`expect_close`: compare a student's result with what it should be.
- :func:`reference_calls` / :func:`expect_independent`: detect that a student's function called
  the package's own reference implementation (e.g. ``mbrl_course.planning``) instead of
  implementing the algorithm.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

from mbrl_course.grading.report import GradingError


def fmt(value: Any, digits: int = 4) -> str:
    """A short readable rendering of a number, shape or small tensor for messages."""
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            return f"{float(value):.{digits}g}"
        if value.numel() <= 6:
            return "[" + ", ".join(f"{float(v):.{digits}g}" for v in value.flatten()) + "]"
        return f"tensor of shape {tuple(value.shape)}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, torch.Size):
        return str(tuple(value))
    return str(value)


def expect_tensor(name: str, value: Any) -> torch.Tensor:
    """``value`` must be a torch.Tensor; return it."""
    if not isinstance(value, torch.Tensor):
        raise GradingError(f"{name} returned a {type(value).__name__}; expected a torch.Tensor")
    return value


def expect_shape(name: str, value: Any, expected: tuple[int, ...], meaning: str = "") -> torch.Tensor:
    """``value`` must be a tensor of shape ``expected``; ``meaning`` names the dimensions, e.g. "(N, H, A)"."""
    value = expect_tensor(name, value)
    if tuple(value.shape) != tuple(expected):
        what = f" = {meaning}" if meaning else ""
        hint = ""
        if sorted(value.shape) == sorted(expected):
            hint = " The sizes are right but in the wrong order."
        elif len(value.shape) == len(expected):
            off = [i for i, (a, b) in enumerate(zip(value.shape, expected)) if a != b]
            if len(off) == 1 and abs(value.shape[off[0]] - expected[off[0]]) == 1:
                hint = f" Dimension {off[0]} is off by one."
        raise GradingError(f"{name} returned shape {tuple(value.shape)}; expected {tuple(expected)}{what}.{hint}")
    return value


def expect_finite(name: str, value: torch.Tensor) -> None:
    """No NaN or infinite entries."""
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise GradingError(f"{name} returned {bad} NaN or infinite entries")


def expect_in_bounds(name: str, value: torch.Tensor, low: torch.Tensor, high: torch.Tensor, tol: float = 1e-6) -> None:
    """Every entry of ``value`` (..., A) lies in [low, high] (A,), up to ``tol``."""
    expect_finite(name, value)
    low = low.to(value.dtype)
    high = high.to(value.dtype)
    below = value < low - tol
    above = value > high + tol
    if bool(below.any()) or bool(above.any()):
        worst_low = float((low - value).max())
        worst_high = float((value - high).max())
        count = int(below.sum() + above.sum())
        raise GradingError(
            f"{name} returned {count} action(s) outside [action_low, action_high] = "
            f"[{fmt(low)}, {fmt(high)}] (up to {max(worst_low, worst_high):.3g} beyond a bound). "
            "Actions must respect the bounds: clamp them (torch.clamp) or sample inside them."
        )


def expect_close(
    name: str,
    got: torch.Tensor,
    want: torch.Tensor,
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    what: str = "value",
    hint: str = "",
) -> None:
    """``got`` ≈ ``want`` elementwise (same shape); the message shows the largest difference."""
    got = expect_shape(name, got, tuple(want.shape))
    expect_finite(name, got)
    got = got.detach().to(torch.float64)
    want = want.detach().to(torch.float64)
    diff = (got - want).abs()
    if not bool((diff <= atol + rtol * want.abs()).all()):
        index = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape))
        raise GradingError(
            f"{name}: wrong {what}: at index {index} you have {float(got[index]):.5g}, "
            f"expected {float(want[index]):.5g}. {hint}".rstrip()
        )


def call_student(name: str, fn: Callable, *args, **kwargs) -> Any:
    """Call the student's function ``name``; ``NotImplementedError`` becomes a message (any other crash
    reaches the :class:`~mbrl_course.grading.report.Report`, which names the student's line that raised)."""
    try:
        return fn(*args, **kwargs)
    except GradingError:
        raise
    except NotImplementedError:
        raise GradingError(f"{name}: not implemented yet: replace `raise NotImplementedError()` with your code") from None


def expect_pair(name: str, result: Any, first: str, second: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``result`` must be a pair of tensors (``first``, ``second`` name them in messages); return it."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise GradingError(f"{name} returned a {type(result).__name__}; expected a pair ({first}, {second}).")
    return expect_tensor(f"{name} ({first})", result[0]), expect_tensor(f"{name} ({second})", result[1])


def _first_tensor(result: Any) -> Any:
    """The result itself, or the first entry of a tuple result (e.g. a network's outputs)."""
    while isinstance(result, (tuple, list)) and result:
        result = result[0]
    return result


def expect_uses_generator(name: str, draw: Callable[[torch.Generator], Any], seed: int = 0, *,
                          atol: float = 0.0, example: str = "torch.rand") -> None:
    """Same seed -> same result (up to ``atol``), other seed -> another: all randomness comes from the
    generator ``draw`` is given. A tuple result is judged by its first tensor."""

    def result(offset: int) -> torch.Tensor:
        value = call_student(name, draw, torch.Generator().manual_seed(seed + offset))
        return expect_tensor(name, _first_tensor(value))

    first, again, other = result(0), result(0), result(1)
    alike = first.shape == again.shape and (
        torch.equal(first, again) if atol == 0 else
        torch.allclose(first.double(), again.double(), atol=atol, rtol=10 * atol))
    if not alike:
        raise GradingError(
            f"{name}: two calls with generators seeded alike gave different results. Draw every random "
            f"number from the generator you are given, e.g. {example}(..., generator=generator)."
        )
    if first.shape == other.shape and torch.equal(first, other):
        raise GradingError(
            f"{name}: generators with different seeds gave the same result. Draw your random numbers "
            "from the generator you are given (do not create or reseed your own)."
        )


# --------------------------------------------------------------------------- reference detection
def _package_dir(package: str) -> str:
    """The folder of a package (with a trailing separator), or the file of a single-file module."""
    module = importlib.import_module(package)
    path = os.path.realpath(module.__file__)
    if os.path.basename(path) == "__init__.py":
        return os.path.dirname(path) + os.sep
    return path


@contextlib.contextmanager
def reference_calls(package: str = "mbrl_course.planning") -> Iterator[list[str]]:
    """Record every Python function of ``package`` that runs inside the block.

    Yields a list that fills with ``"name (file.py)"`` entries; a profiling hook
    (``sys.setprofile``, also on threads started inside) sees every Python call, however the
    student imported or aliased the reference code.
    """
    root = _package_dir(package)
    seen: list[str] = []
    known: dict[str, bool] = {}

    def hook(frame, event, arg):
        if event != "call":
            return
        filename = frame.f_code.co_filename
        inside = known.get(filename)
        if inside is None:
            real = os.path.realpath(filename)
            inside = known[filename] = real == root or real.startswith(root) and root.endswith(os.sep)
        if inside:
            seen.append(f"{frame.f_code.co_name} ({os.path.basename(filename)})")

    previous = sys.getprofile()
    threading.setprofile(hook)
    sys.setprofile(hook)
    try:
        yield seen
    finally:
        sys.setprofile(previous)
        threading.setprofile(None)


def expect_independent(name: str, call: Callable[[], Any], package: str = "mbrl_course.planning") -> Any:
    """Run ``call()`` and fail if it ran any code of ``package`` (the reference implementation).

    In the student's notebook a profiler watches the call. When grading, the student's code runs
    in a sandbox where the reference implementation cannot be imported or read: the call fails if
    it needs it, and the sandbox reports every attempt, which fails this check too.
    """
    from mbrl_course.grading import remote

    session = remote.current()
    if session is not None:
        since = len(session.events)
        result = call()
        attempts = [e for e in session.reference_events(since) if package in e]
        seen = [attempts[0].split(":")[0]] if attempts else []
    else:
        with reference_calls(package) as seen:
            result = call()
    if seen:
        calls = ", ".join(dict.fromkeys(seen))
        raise GradingError(
            f"{name} called the reference implementation in {package} ({calls}). "
            "This exercise asks you to implement the algorithm yourself with torch operations; "
            f"a solution that calls {package} scores 0 here."
        )
    return result
