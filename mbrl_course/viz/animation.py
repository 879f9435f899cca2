"""Rollouts as animations: a GIF on disk, or an animation in a notebook."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _check_frames(frames: Sequence[np.ndarray]) -> None:
    if len(frames) == 0:
        raise ValueError("frames: expected at least one RGB frame, got an empty sequence")
    first = np.asarray(frames[0])
    if first.ndim != 3 or first.shape[-1] != 3:
        raise ValueError(f"frames: expected RGB arrays of shape (H, W, 3), got {first.shape}")


def save_gif(frames: Sequence[np.ndarray], path: str | Path, *, fps: int = 30, max_frames: int = 400) -> Path:
    """Write RGB frames ``(H, W, 3) uint8`` to an animated GIF (every k-th frame past ``max_frames``)."""
    from PIL import Image

    _check_frames(frames)
    step = max(1, int(np.ceil(len(frames) / max_frames)))
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames[::step]]
    path = Path(path)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 * step / fps), loop=0)
    return path


def animate_frames(frames: Sequence[np.ndarray], *, fps: int = 30, title: str | None = None):
    """A matplotlib animation of RGB frames; in a notebook show it with ``HTML(anim.to_jshtml())``."""
    import matplotlib.pyplot as plt
    from matplotlib import animation

    _check_frames(frames)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    ax.axis("off")
    if title:
        ax.set_title(title)
    image = ax.imshow(frames[0])

    def update(i):
        image.set_data(frames[i])
        return (image,)

    anim = animation.FuncAnimation(fig, update, frames=len(frames), interval=1000 / fps, blit=True)
    plt.close(fig)
    return anim
