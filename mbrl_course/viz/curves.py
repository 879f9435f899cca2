"""Learning curves: episode return against environment steps."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt

RETURNS_COLUMNS = ("episode", "return", "env_steps", "wall_s")


def read_returns_csv(path: str | Path) -> list[dict[str, float]]:
    """Read a run's ``returns.csv`` (columns ``episode,return,env_steps,wall_s``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "returns.csv"
    if not path.exists():
        raise FileNotFoundError(f"returns.csv: no file at {path} (is this a run directory?)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(RETURNS_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: expected columns {RETURNS_COLUMNS}, missing {sorted(missing)}")
        return [{k: float(row[k]) for k in RETURNS_COLUMNS} for row in reader]


def plot_learning_curves(
    runs: Mapping[str, Sequence[Mapping[str, float]]],
    path: str | Path | None = None,
    *,
    title: str = "Learning curves",
    seed_episodes: int = 0,
    reference: Mapping[str, float] | None = None,
):
    """Draw episode return against cumulative environment steps, one line per run.

    ``runs`` maps a label to rows with ``return`` and ``env_steps``. ``seed_episodes`` greys out the
    first episodes (random actions that seed D_real). ``reference`` draws horizontal lines,
    e.g. ``{"random policy": -1200}``. Saves a PNG when ``path`` is given; returns the figure.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for label, rows in runs.items():
        steps = [r["env_steps"] for r in rows]
        returns = [r["return"] for r in rows]
        (line,) = ax.plot(steps, returns, marker="o", markersize=3, label=label)
        if seed_episodes and len(rows) >= seed_episodes:
            ax.axvspan(0, steps[seed_episodes - 1], color="0.9", zorder=0)
    if seed_episodes:
        ax.text(0.01, 0.02, "random seed episodes", transform=ax.transAxes, fontsize=8, color="0.4")
    for label, value in (reference or {}).items():
        ax.axhline(value, color="0.5", linestyle="--", linewidth=1)
        ax.text(ax.get_xlim()[0], value, f" {label}", va="bottom", fontsize=8, color="0.3")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
        plt.close(fig)
    return fig


def plot_learning_curve(rows: Sequence[Mapping[str, float]], path: str | Path | None = None, *,
                        title: str = "Learning curve", label: str = "agent", seed_episodes: int = 0):
    """One run's learning curve (see :func:`plot_learning_curves`)."""
    return plot_learning_curves({label: rows}, path, title=title, seed_episodes=seed_episodes)
