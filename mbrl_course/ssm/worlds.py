"""A generated 2-D world for GTM-SM: an agent moves over a procedurally generated image and sees 32×32 crops.

The image-navigation task of Fraccaro et al. (2018), generated here (no downloads):

- **the world** (:func:`make_world`): a seeded RGB image, ``size × size`` pixels, uint8, painted with soft
  coloured blobs over a coloured background (each world its own seed stream, so a batch of worlds is
  deterministic and independent of how many are made);
- **the agent** sits at a continuous position p_t = (x_t, y_t) in pixels (x the column, y the row) of the
  centre of its view, inside [16, size − 16]² so that the view never leaves the image;
- **the action** a_t is a velocity (pixels per step): p_t = clip(p_{t−1} + a_t). The world stops the agent
  at the walls, and the *recorded* action is the velocity actually executed, a_t = p_t − p_{t−1}, so that
  p_t = p_0 + Σ_{k≤t} a_k holds exactly (what GTM-SM's p(s_t | s_{t−1}, a_t) learns);
- **the observation** x_t is the integer crop centred at round(p_t): rows round(y_t) − 16 .. round(y_t) + 15,
  columns round(x_t) − 16 .. round(x_t) + 15, shape (3, 32, 32), uint8 (:func:`crop`). Integer crops keep
  the pixels exact (no interpolation): the rounding is at most half a pixel.

The explorer (:func:`explore`) is a smooth random walk, v_t = ρ v_{t−1} + noise, clipped to a maximum
speed, that steers into a per-step box (the whole world by default): a velocity component that points
out of the box is turned around, and an agent outside its box heads back at full speed.
:func:`revisit_trajectories` uses the boxes to make the agent explore a home box (the context), go away to
the opposite corner for ≥ 100 steps and come back home (the target: revisiting places seen in the context).

Shapes: B trajectories, T steps; ``positions (B, T+1, 2)`` p_0..p_T, ``actions (B, T, 2)`` a_1..a_T,
``frames (B, T, 3, 32, 32)`` x_1..x_T (x_t seen at p_t, after a_t).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mbrl_course._checks import check_positive_float, check_positive_int

CROP = 32
"""side of the agent's view in pixels"""
HALF = CROP // 2

__all__ = ["CROP", "Trajectories", "World", "crop", "explore", "home_boxes", "make_world", "revisit_trajectories"]


@dataclass
class World:
    """A batch of generated worlds."""

    image: torch.Tensor
    """the worlds' pixels: (W, 3, size, size) uint8"""

    @property
    def size(self) -> int:
        """side of each world in pixels"""
        return int(self.image.shape[-1])

    @property
    def num_worlds(self) -> int:
        """W"""
        return int(self.image.shape[0])

    @property
    def low(self) -> float:
        """smallest coordinate of the view's centre"""
        return float(HALF)

    @property
    def high(self) -> float:
        """largest coordinate of the view's centre"""
        return float(self.size - HALF)


@dataclass
class Trajectories:
    """What :func:`explore` returns: B trajectories of T steps."""

    positions: torch.Tensor
    """p_0..p_T, (x, y) in pixels: (B, T+1, 2) float32"""
    actions: torch.Tensor
    """a_1..a_T, the executed velocities p_t − p_{t−1}: (B, T, 2) float32"""
    frames: torch.Tensor
    """x_1..x_T, the crops at p_1..p_T: (B, T, 3, 32, 32) uint8"""
    world_index: torch.Tensor
    """which world each trajectory lives in: (B,) int64"""


def make_world(seed: int, size: int = 128, num_worlds: int = 1, num_blobs: int = 28) -> World:
    """Paint ``num_worlds`` worlds of ``size × size`` RGB pixels with soft coloured blobs; world i uses seed (seed, i).

    Each blob has a centre uniform over the image, a radius r ~ U(4, 14) px, a random colour c and an
    opacity α(u) = min(1, 1.5 exp(−|u − centre|² / 2r²)) (a soft disc, opaque in its core); blobs are painted
    in order, image ← (1 − α) image + α c, over a random background colour.
    Returns a :class:`World` with ``image (num_worlds, 3, size, size)`` uint8.
    """
    seed = check_positive_int("seed", seed, allow_zero=True)
    size = check_positive_int("size", size)
    num_worlds = check_positive_int("num_worlds", num_worlds)
    num_blobs = check_positive_int("num_blobs", num_blobs)
    if size < 2 * CROP:
        raise ValueError(f"size: expected at least {2 * CROP} pixels (twice the {CROP}-pixel view), got {size}")
    grid = np.arange(size, dtype=np.float64) + 0.5
    images = np.empty((num_worlds, 3, size, size), dtype=np.uint8)
    for w in range(num_worlds):
        rng = np.random.default_rng([seed, w])
        image = np.broadcast_to(rng.uniform(0.0, 1.0, (3, 1, 1)), (3, size, size)).copy()
        centres = rng.uniform(0.0, size, (num_blobs, 2))
        radii = rng.uniform(4.0, 14.0, num_blobs)
        colours = rng.uniform(0.0, 1.0, (num_blobs, 3))
        for (cx, cy), r, c in zip(centres, radii, colours):
            d2 = (grid[None, :] - cx) ** 2 + (grid[:, None] - cy) ** 2            # (size, size): row y, column x
            alpha = np.minimum(1.0, 1.5 * np.exp(-d2 / (2.0 * r * r)))          # soft disc, opaque in its core
            image = (1.0 - alpha) * image + alpha * c[:, None, None]
        images[w] = np.clip(np.rint(255.0 * image), 0, 255).astype(np.uint8)
    return World(torch.from_numpy(images))


def crop(world: World, positions: torch.Tensor, world_index: torch.Tensor | None = None) -> torch.Tensor:
    """The 32×32 views centred at round(p): x = image[:, round(y)−16 : round(y)+16, round(x)−16 : round(x)+16].

    ``positions: (B, ..., 2)`` (x, y) in pixels inside [16, size − 16]; ``world_index: (B,)`` the world of each
    row (None: all in world 0). Returns ``(B, ..., 3, 32, 32)`` uint8.
    """
    if not isinstance(positions, torch.Tensor) or positions.ndim < 2 or positions.shape[-1] != 2:
        raise ValueError(f"positions: expected a tensor of shape (B, ..., 2), got "
                         f"{tuple(positions.shape) if isinstance(positions, torch.Tensor) else type(positions)}")
    B = positions.shape[0]
    if world_index is None:
        world_index = torch.zeros(B, dtype=torch.long)
    if world_index.shape != (B,):
        raise ValueError(f"world_index: expected shape ({B},), got {tuple(world_index.shape)}")
    lo, hi = world.low - 0.5, world.high + 0.5
    if bool(((positions < lo) | (positions > hi)).any()):
        raise ValueError(f"positions: expected coordinates in [{world.low}, {world.high}] so that the "
                         f"{CROP}×{CROP} view stays inside the {world.size}-pixel world, got "
                         f"[{float(positions.min()):.2f}, {float(positions.max()):.2f}]")
    corner = torch.round(positions).long() - HALF                              # (B, ..., 2) top-left (x, y)
    offsets = torch.arange(CROP)
    cols = corner[..., 0, None] + offsets                                      # (B, ..., 32)
    rows = corner[..., 1, None] + offsets
    w = world_index.view((B,) + (1,) * (positions.ndim - 2)).expand(positions.shape[:-1])
    pixels = world.image[w[..., None, None], :, rows[..., :, None], cols[..., None, :]]  # (B, ..., 32, 32, 3)
    return pixels.movedim(-1, -3).contiguous()


def explore(world: World, num_steps: int, generator: torch.Generator, trajectories_per_world: int = 1, *,
            boxes: torch.Tensor | None = None, start: torch.Tensor | None = None, max_speed: float = 3.0,
            smoothness: float = 0.7) -> Trajectories:
    """Smooth random walks of ``num_steps`` steps, ``trajectories_per_world`` in each world, batched and seeded.

    v_t = clip(ρ v_{t−1} + max_speed · ε_t), ε_t ~ U(−1, 1)², |v_t|_∞ ≤ max_speed, ρ = ``smoothness``; a component
    of v_t that points out of the step's box is turned around (and one outside the box is set to max_speed
    towards it); then p_t = clip(p_{t−1} + v_t, 16, size − 16) and a_t = p_t − p_{t−1} (the executed velocity).
    ``boxes: (B, T, 4)`` per step (x_lo, y_lo, x_hi, y_hi) (None: the whole world); ``start: (B, 2)`` p_0
    (None: uniform inside the first box). B = W · trajectories_per_world, trajectory b in world
    b // trajectories_per_world. Returns :class:`Trajectories`.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    T = check_positive_int("num_steps", num_steps)
    per = check_positive_int("trajectories_per_world", trajectories_per_world)
    speed = check_positive_float("max_speed", max_speed)
    rho = float(smoothness)
    if not 0.0 <= rho < 1.0:
        raise ValueError(f"smoothness: expected ρ in [0, 1), got {smoothness!r}")
    B = world.num_worlds * per
    lo, hi = world.low, world.high
    if boxes is None:
        boxes = torch.tensor([lo, lo, hi, hi]).expand(B, T, 4)
    if boxes.shape != (B, T, 4):
        raise ValueError(f"boxes: expected shape ({B}, {T}, 4) (x_lo, y_lo, x_hi, y_hi per step), "
                         f"got {tuple(boxes.shape)}")
    boxes = boxes.float()
    box_lo, box_hi = boxes[..., :2].clamp(lo, hi), boxes[..., 2:].clamp(lo, hi)
    if start is None:
        u = torch.rand(B, 2, generator=generator)
        start = box_lo[:, 0] + u * (box_hi[:, 0] - box_lo[:, 0])
    if start.shape != (B, 2):
        raise ValueError(f"start: expected shape ({B}, 2), got {tuple(start.shape)}")
    p = start.float().clamp(lo, hi)
    v = torch.zeros(B, 2)
    positions = [p]
    for t in range(T):
        eps = torch.rand(B, 2, generator=generator) * 2.0 - 1.0
        v = (rho * v + eps * speed).clamp(-speed, speed)
        ahead = p + v
        v = torch.where((ahead < box_lo[:, t]) & (v < 0), -v, v)              # turn around at the box's edges
        v = torch.where((ahead > box_hi[:, t]) & (v > 0), -v, v)
        v = torch.where(p < box_lo[:, t], torch.full_like(v, speed), v)        # outside the box: head back
        v = torch.where(p > box_hi[:, t], torch.full_like(v, -speed), v)
        p = (p + v).clamp(lo, hi)
        positions.append(p)
    positions_t = torch.stack(positions, 1)                                    # (B, T+1, 2)
    world_index = torch.arange(world.num_worlds).repeat_interleave(per)
    return Trajectories(positions=positions_t, actions=positions_t[:, 1:] - positions_t[:, :-1],
                        frames=crop(world, positions_t[:, 1:], world_index), world_index=world_index)


def home_boxes(world: World, batch: int, generator: torch.Generator, home_size: float = 40.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A home box in a random corner of the world per trajectory, and the away box in the opposite corner.

    Returns ``(home, away)``, each ``(B, 4)`` (x_lo, y_lo, x_hi, y_hi).
    """
    side = check_positive_float("home_size", home_size)
    lo, hi = world.low, world.high
    if side > (hi - lo) / 2:
        raise ValueError(f"home_size: expected at most half the free range ({(hi - lo) / 2:g} px), got {home_size}")
    corner = torch.randint(0, 2, (batch, 2), generator=generator).float()          # 0: low side, 1: high side
    home_lo = lo + corner * (hi - lo - side)
    away_lo = lo + (1.0 - corner) * (hi - lo - side)
    return torch.cat([home_lo, home_lo + side], -1), torch.cat([away_lo, away_lo + side], -1)


def revisit_trajectories(world: World, context_steps: int, away_steps: int, return_steps: int,
                         generator: torch.Generator, trajectories_per_world: int = 1, *,
                         home_size: float = 40.0, max_speed: float = 3.0) -> Trajectories:
    """Explore home (the context), go away for ``away_steps`` steps, come back and wander at home again.

    Steps 1..τ (τ = ``context_steps``) stay in a home box in a random corner; steps τ+1..τ+``away_steps`` head
    for the box in the opposite corner and wander there; the last ``return_steps`` steps head home and wander
    in the home box, revisiting places seen in the context after ≥ ``away_steps`` steps away.
    Returns :class:`Trajectories` with T = τ + away_steps + return_steps.
    """
    tau = check_positive_int("context_steps", context_steps)
    away = check_positive_int("away_steps", away_steps)
    back = check_positive_int("return_steps", return_steps)
    B = world.num_worlds * check_positive_int("trajectories_per_world", trajectories_per_world)
    home, away_box = home_boxes(world, B, generator, home_size)
    phase = torch.cat([torch.zeros(tau), torch.ones(away), torch.zeros(back)]).bool()   # True: away
    boxes = torch.where(phase[None, :, None], away_box[:, None], home[:, None])
    return explore(world, tau + away + back, generator, trajectories_per_world, boxes=boxes, max_speed=max_speed)
