"""Compute tiers: how long anything in the course may train.

Three tiers, chosen once per process:

``smoke``
    seconds: CI, nbgrader's autograder and the notebook tests. Set automatically when the
    environment variable ``CI`` or ``NBGRADER_EXECUTION`` is present.
``default``
    a few minutes on a 2-core CPU: students on a laptop, Binder or Colab.
``full``
    paper-scale runs, meant for a GPU.

``MBRL_COURSE_BUDGET=smoke|default|full`` overrides the automatic choice.
Every agent's default configuration asks :func:`budget` which tier it runs in.
"""

from __future__ import annotations

import os
from typing import Literal, TypeVar

Tier = Literal["smoke", "default", "full"]
TIERS: tuple[Tier, ...] = ("smoke", "default", "full")
T = TypeVar("T")


def budget() -> Tier:
    """Return the compute tier for this process: ``"smoke"``, ``"default"`` or ``"full"``.

    ``MBRL_COURSE_BUDGET`` wins when set; otherwise ``CI`` or ``NBGRADER_EXECUTION`` in the
    environment means ``"smoke"``, and anything else ``"default"``.
    """
    override = os.environ.get("MBRL_COURSE_BUDGET", "").strip().lower()
    if override:
        if override not in TIERS:
            raise ValueError(
                f"MBRL_COURSE_BUDGET: expected one of {', '.join(TIERS)}, got {override!r}"
            )
        return override  # type: ignore[return-value]
    if "CI" in os.environ or "NBGRADER_EXECUTION" in os.environ:
        return "smoke"
    return "default"


def by_budget(smoke: T, default: T, full: T, tier: Tier | None = None) -> T:
    """Pick the value for the current tier (or for ``tier`` when given).

    >>> by_budget(smoke=1, default=10, full=100, tier="default")
    10
    """
    tier = budget() if tier is None else tier
    if tier not in TIERS:
        raise ValueError(f"tier: expected one of {', '.join(TIERS)}, got {tier!r}")
    return {"smoke": smoke, "default": default, "full": full}[tier]
