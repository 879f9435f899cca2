"""The data set D_real of the lecture's two loops: a replay buffer, splits, bootstraps and normalisers.

Both loops of the slides grow a data set of real transitions,

    D_real := D_real ∪ (i, u, g_i, i'),

and fit the dynamics model on it, ψ := argmin_ψ L(f_ψ(·, ·), D_real). :class:`ReplayBuffer` is D_real:
it stores transitions (state i, action u, reward g_i, next state i', terminated flag) in tensors
preallocated on the device, hands out uniform minibatches, a train/validation split (for early
stopping) and per-member bootstrap resamples (for the ensembles of PETS and MBPO). It also records
where episodes end (``terminated`` or ``truncated``).

:class:`EpisodeBuffer` is D_real for the sequence models (VRNN, RSSM, PlaNet, Dreamer): whole
episodes whose observations have any shape and dtype ((64, 64, 3) uint8 frames) and are stored once
per step, FIFO eviction of whole episodes, and :meth:`EpisodeBuffer.sample_sequences`, chunks of
L consecutive steps inside one episode (a :class:`SequenceBatch`, padded and masked where an episode
is shorter). It takes the same ``add`` as :class:`ReplayBuffer` and hands out the same single
transitions (``sample``, ``batch``, ``split``, ``bootstrap``), so either can be a loop's D_real.

:class:`Normalizer` standardises model inputs and targets, x ↦ (x − mean) / std.

Indices. ``split``, ``bootstrap`` and ``batch`` talk about indices ``0 .. len(buffer) - 1``: storage
slots of a :class:`ReplayBuffer` (once the ring has wrapped, slot order is not time order;
:meth:`ReplayBuffer.all` returns the transitions oldest first), transitions oldest first in an
:class:`EpisodeBuffer`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from mbrl_course._checks import (
    as_tensor,
    check_finite,
    check_positive_float,
    check_positive_int,
    check_shape,
    resolve_device,
)

__all__ = ["Batch", "SequenceBatch", "ReplayBuffer", "EpisodeBuffer", "Normalizer"]


@dataclass
class Batch:
    """A batch of transitions (i, u, g_i, i', terminated), optionally with a leading member axis K.

    Shapes: ``obs (B, O)``, ``action (B, A)``, ``reward (B,)``, ``next_obs (B, O)``,
    ``terminated (B,)`` (bool); with a leading ``K`` on every field for bootstrapped ensemble
    batches (``obs (K, B, O)`` ...).
    """

    obs: torch.Tensor
    """state i: (B, O) or (K, B, O)"""
    action: torch.Tensor
    """action u: (B, A) or (K, B, A)"""
    reward: torch.Tensor
    """reward g_i: (B,) or (K, B)"""
    next_obs: torch.Tensor
    """next state i': (B, O) or (K, B, O)"""
    terminated: torch.Tensor
    """True where i' is terminal: (B,) or (K, B), bool"""

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Batch:
        """The same batch on ``device``, its floating tensors cast to ``dtype`` (``terminated`` stays bool)."""
        return Batch(**{
            f.name: getattr(self, f.name).to(device=device, dtype=None if f.name == "terminated" else dtype)
            for f in fields(self)
        })

    def slice(self, start: int, stop: int) -> Batch:
        """Transitions ``start:stop`` along the batch axis B (views, any leading K axis kept)."""
        return Batch(
            obs=self.obs[..., start:stop, :],
            action=self.action[..., start:stop, :],
            reward=self.reward[..., start:stop],
            next_obs=self.next_obs[..., start:stop, :],
            terminated=self.terminated[..., start:stop],
        )

    def __len__(self) -> int:
        """Number of transitions along the batch axis B (per member when there is a K axis)."""
        return int(self.reward.shape[-1])


@dataclass
class SequenceBatch:
    """B chunks of L consecutive steps (i_t, u_t, g_t, i_{t+1}, terminated_t), each inside one episode.

    Shapes: ``obs (B, L, *obs_shape)`` and ``next_obs (B, L, *obs_shape)`` in the buffer's
    observation dtype (uint8 frames stay uint8), ``action (B, L, A)``, ``reward (B, L)``,
    ``terminated (B, L)`` and ``mask (B, L)`` bool. Where an episode is shorter than L the chunk
    is padded with zeros and ``mask`` is False; the mask is True on a prefix of each chunk.
    """

    obs: torch.Tensor
    """i_t: (B, L, *obs_shape)"""
    action: torch.Tensor
    """u_t: (B, L, A)"""
    reward: torch.Tensor
    """g_t: (B, L)"""
    next_obs: torch.Tensor
    """i_{t+1}: (B, L, *obs_shape); obs[:, 1:] == next_obs[:, :-1] wherever mask[:, 1:]"""
    terminated: torch.Tensor
    """True where i_{t+1} is terminal: (B, L) bool"""
    mask: torch.Tensor
    """True on real steps, False on padding: (B, L) bool"""

    def to(self, device: torch.device | str | None = None) -> SequenceBatch:
        """The same chunks on ``device`` (None: where they are), dtypes unchanged."""
        if device is None:
            return self
        device = resolve_device(device)
        return SequenceBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        """Number of chunks B."""
        return int(self.mask.shape[0])


def _random_ints(high: int, size: tuple[int, ...], generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
    """Uniform integers in [0, high) drawn on the generator's device, returned on ``device``."""
    where = generator.device if generator is not None else device
    return torch.randint(0, high, size, generator=generator, device=where).to(device)


def _random_perm(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """A uniform random permutation of 0..n-1 drawn on the generator's device, returned on ``device``."""
    where = generator.device if generator is not None else device
    return torch.randperm(n, generator=generator, device=where).to(device)


def _validated(name: str, value: Any, shape: tuple[int | str, ...], dtype: torch.dtype,
               device: torch.device) -> torch.Tensor:
    """``value`` as a detached ``dtype`` tensor of ``shape`` on ``device``, or an error naming ``name``.

    ``dtype`` bool: flags, a bool or a number (nonzero is True). Floating: finite numbers. Integer
    (uint8 pixels): whole numbers inside the dtype's range, never silently wrapped or rounded.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach()  # D_real stores data, never a piece of an autograd graph
    if dtype == torch.bool:
        tensor = as_tensor(name, value, device=device)
        check_shape(name, tensor, shape)
        if tensor.is_floating_point():
            check_finite(name, tensor)
        return tensor != 0
    tensor = as_tensor(name, value)
    if tensor.dtype == torch.bool:
        raise TypeError(f"{name}: expected numbers, got a bool tensor")
    if dtype.is_floating_point:
        tensor = tensor.to(device=device, dtype=dtype)
        check_shape(name, tensor, shape)
        check_finite(name, tensor)
        return tensor
    check_shape(name, tensor, shape)
    check_finite(name, tensor)
    if tensor.dtype != dtype and tensor.numel():
        if tensor.is_floating_point() and not bool((tensor == tensor.round()).all()):
            raise ValueError(f"{name}: expected whole numbers for {dtype} storage, got fractions")
        info, low, high = torch.iinfo(dtype), tensor.min().item(), tensor.max().item()
        if low < info.min or high > info.max:
            raise ValueError(f"{name}: expected values in [{info.min}, {info.max}] for {dtype} storage, "
                             f"got values in [{low}, {high}]")
    return tensor.to(device=device, dtype=dtype)


class _TransitionSampling:
    """Minibatches, splits and bootstraps of single transitions, shared by the two buffers.

    A subclass provides ``device``, ``__len__`` and ``batch(indices, check=...)``, whose indices run
    over ``0 .. len(self) - 1``; everything here draws such indices.
    """

    device: torch.device

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, indices: torch.Tensor, *, check: bool = True) -> Batch:
        raise NotImplementedError

    def _require(self, n: int = 1) -> None:
        if len(self) < n:
            raise ValueError(f"buffer: needs at least {n} transition(s), holds {len(self)}")

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Batch:
        """A minibatch of ``batch_size`` transitions drawn uniformly with replacement from D_real."""
        batch_size = check_positive_int("batch_size", batch_size)
        self._require()
        return self.batch(_random_ints(len(self), (batch_size,), generator, self.device))

    def split(
        self, val_fraction: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A random partition of the indices ``0 .. len - 1`` into (train, validation) index tensors.

        The validation part has round(val_fraction · len) indices, and at least one whenever
        ``val_fraction > 0`` and the buffer holds two or more transitions; the training part is
        never empty.
        """
        val_fraction = check_positive_float("val_fraction", val_fraction, allow_zero=True)
        if val_fraction >= 1:
            raise ValueError(f"val_fraction: expected a number in [0, 1), got {val_fraction}")
        self._require()
        n = len(self)
        n_val = int(round(val_fraction * n))
        if val_fraction > 0 and n >= 2:
            n_val = max(n_val, 1)
        n_val = min(n_val, n - 1)
        perm = _random_perm(n, generator, self.device)
        return perm[n_val:], perm[:n_val]

    def bootstrap(
        self, num_members: int, indices: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Per-member bootstrap resamples of ``indices``: (K, n), each row drawn with replacement."""
        num_members = check_positive_int("num_members", num_members)
        indices = as_tensor("indices", indices, device=self.device)
        check_shape("indices", indices, ("n",))
        n = indices.shape[0]
        if n == 0:
            raise ValueError("indices: expected at least one index to resample, got none")
        return indices[_random_ints(n, (num_members, n), generator, self.device)]

    def _check_indices(self, indices: torch.Tensor, check: bool) -> torch.Tensor:
        """``indices`` as an integer tensor (n,) or (K, n) on the device, in [0, len) when ``check``."""
        indices = as_tensor("indices", indices, device=self.device)
        if indices.dtype not in (torch.int64, torch.int32) or indices.dim() not in (1, 2):
            raise ValueError(
                f"indices: expected an integer tensor of shape (n,) or (K, n), got dtype {indices.dtype}, "
                f"shape {tuple(indices.shape)}"
            )
        if check and indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= len(self)):
            raise ValueError(f"indices: expected values in [0, {len(self)}), got values outside that range")
        return indices


class ReplayBuffer(_TransitionSampling):
    """D_real: transitions (i, u, g_i, i', terminated) in preallocated device tensors, a ring when full.

    Each transition also keeps a ``truncated`` flag: with ``terminated`` it records where the
    episodes end (:meth:`episode_ends`), which survives the ring's wrap and the checkpoints.

    Args:
        obs_dim: O, the size of a state i.
        act_dim: A, the size of an action u.
        capacity: most transitions kept; when full, the oldest is overwritten first.
        device: where the storage lives (``"cpu"``, ``"cuda"``, ``"auto"``).
        dtype: floating dtype of states, actions and rewards (``terminated`` is bool).
    """

    _FIELDS = ("obs", "action", "reward", "next_obs", "terminated")  # those of a Batch

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        capacity: int = 1_000_000,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.act_dim = check_positive_int("act_dim", act_dim)
        self.capacity = check_positive_int("capacity", capacity)
        if not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating dtype, got {dtype}")
        self.device = resolve_device(device)
        self.dtype = dtype
        self._storage = {
            "obs": torch.zeros(self.capacity, self.obs_dim, device=self.device, dtype=dtype),
            "action": torch.zeros(self.capacity, self.act_dim, device=self.device, dtype=dtype),
            "reward": torch.zeros(self.capacity, device=self.device, dtype=dtype),
            "next_obs": torch.zeros(self.capacity, self.obs_dim, device=self.device, dtype=dtype),
            "terminated": torch.zeros(self.capacity, device=self.device, dtype=torch.bool),
            "truncated": torch.zeros(self.capacity, device=self.device, dtype=torch.bool),
        }
        self._next = 0  # slot the next transition goes to
        self._size = 0

    # ------------------------------------------------------------------ adding
    def _validated(self, name: str, value: Any, shape: tuple[int | str, ...]) -> torch.Tensor:
        dtype = torch.bool if name in ("terminated", "truncated") else self.dtype
        return _validated(name, value, shape, dtype, self.device)

    def add(self, obs, action, reward, next_obs, terminated, truncated=False) -> None:
        """D_real := D_real ∪ (i, u, g_i, i'): store one transition.

        Args:
            obs: i, shape (O,).
            action: u, shape (A,).
            reward: g_i, a number or shape ().
            next_obs: i', shape (O,).
            terminated: whether i' is terminal (bool or 0/1).
            truncated: whether the episode was cut after this step without i' being terminal (a time
                limit, an interaction budget); with ``terminated`` it marks where an episode ends.
        """
        self._store({
            "obs": self._validated("obs", obs, (self.obs_dim,))[None],
            "action": self._validated("action", action, (self.act_dim,))[None],
            "reward": self._validated("reward", reward, ())[None],
            "next_obs": self._validated("next_obs", next_obs, (self.obs_dim,))[None],
            "terminated": self._validated("terminated", terminated, ())[None],
            "truncated": self._validated("truncated", truncated, ())[None],
        })

    def add_batch(self, obs, action, reward, next_obs, terminated, truncated=None) -> None:
        """Store B transitions at once (in the order given; the last ones win when B > capacity).

        Args:
            obs: (B, O). action: (B, A). reward: (B,). next_obs: (B, O). terminated: (B,).
            truncated: (B,), or None for no cut episodes.
        """
        obs = self._validated("obs", obs, ("B", self.obs_dim))
        n = obs.shape[0]
        values = {
            "obs": obs,
            "action": self._validated("action", action, (n, self.act_dim)),
            "reward": self._validated("reward", reward, (n,)),
            "next_obs": self._validated("next_obs", next_obs, (n, self.obs_dim)),
            "terminated": self._validated("terminated", terminated, (n,)),
            "truncated": self._validated("truncated", torch.zeros(n) if truncated is None else truncated, (n,)),
        }
        self._store(values)

    def _store(self, values: dict[str, torch.Tensor]) -> None:
        """Write validated rows into the ring, starting at the next free slot."""
        n = values["obs"].shape[0]
        if n == 0:
            return
        if n > self.capacity:  # only the newest `capacity` transitions survive
            values = {k: v[n - self.capacity:] for k, v in values.items()}
            n = self.capacity
        slots = (self._next + torch.arange(n, device=self.device)) % self.capacity
        for key, value in values.items():
            self._storage[key][slots] = value
        self._next = (self._next + n) % self.capacity
        self._size = min(self._size + n, self.capacity)

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return self._size

    def batch(self, indices: torch.Tensor, *, check: bool = True) -> Batch:
        """The transitions in storage slots ``indices``: (n,) gives a plain batch, (K, n) one with a K axis.

        ``check=False`` skips the range check (a device sync), for training loops whose indices
        come from :meth:`split` / :meth:`bootstrap`.
        """
        indices = self._check_indices(indices, check)
        return Batch(**{k: self._storage[k][indices] for k in self._FIELDS})

    def _oldest_first(self) -> torch.Tensor:
        """The filled slots in time order: (len,)."""
        start = self._next if self._size == self.capacity else 0
        return (start + torch.arange(self._size, device=self.device)) % self.capacity

    def all(self) -> Batch:
        """Every stored transition, oldest first: obs (len, O), ..."""
        return self.batch(self._oldest_first(), check=False)

    def episode_ends(self) -> torch.Tensor:
        """True where a transition is the last of its episode (terminated or truncated): (len,) bool, oldest first.

        In the order of :meth:`all`: episode k runs from just after the (k-1)-th True to the k-th
        True; the transitions after the last True belong to the episode still running.
        """
        order = self._oldest_first()
        return self._storage["terminated"][order] | self._storage["truncated"][order]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The filled part of the storage (slot order) and the ring position, for ``torch.save``."""
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "capacity": self.capacity,
            "next": self._next,
            "size": self._size,
            **{k: v[: self._size].clone() for k, v in self._storage.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; with another capacity the transitions are re-added oldest first.

        A state dict saved before buffers kept ``truncated`` loads with no episode cut (only
        ``terminated`` marks ends there).
        """
        for key in ("obs_dim", "act_dim"):
            if state[key] != getattr(self, key):
                raise ValueError(f"state_dict: {key} is {state[key]}, this buffer has {getattr(self, key)}")
        size, nxt = int(state["size"]), int(state["next"])
        if state["capacity"] == self.capacity:
            for key in self._storage:
                value = _saved(state, key, size).to(self.device)
                self._storage[key][:size] = value if value.dtype == torch.bool else value.to(self.dtype)
            self._next, self._size = nxt, size
            return
        start = nxt if size == state["capacity"] else 0
        order = (start + torch.arange(size)) % max(size, 1)
        self._next, self._size = 0, 0
        self.add_batch(*(_saved(state, key, size)[order] for key in self._storage))

    def __repr__(self) -> str:
        return (f"ReplayBuffer(obs_dim={self.obs_dim}, act_dim={self.act_dim}, len={self._size}, "
                f"capacity={self.capacity}, device={self.device})")


class EpisodeBuffer(_TransitionSampling):
    """D_real as whole episodes, each observation stored once: chunks for sequence models, pixels as uint8.

    The sequence models (VRNN, RSSM, PlaNet, Dreamer) learn from chunks
    (i_t, u_t, g_t, i_{t+1})_{t = s .. s+L-1} of one episode. Here step t of an episode keeps
    i_t, u_t, g_t, terminated_t and truncated_t; i_{t+1} is not stored again, it is i of the
    episode's next step. Only each episode's last next observation i_T is kept apart, in a slot of
    its own. Observations keep their shape and dtype: (64, 64, 3) uint8 frames take 12 KiB each.

    **Memory** is allocated once, at construction (:attr:`nbytes`): ``capacity`` observations for
    the steps and ``max_episodes`` for the last next observations, plus actions, rewards and flags.

    **Eviction: whole episodes, FIFO.** When a new step finds no free step slot, or a new episode
    no free episode slot, the oldest episode is dropped whole. Only an episode longer than the
    capacity on its own loses its oldest steps (it keeps the newest ``capacity``). Every stored step
    therefore belongs to a stored episode and chunks never reach stale or foreign data.

    **Episode ends.** An episode ends after a step added with ``terminated`` or ``truncated``; a
    step whose ``obs`` differs from the previous step's ``next_obs`` also starts a new episode (the
    previous step is then marked truncated), so a loop that does not pass ``truncated`` still
    never glues two episodes together.

    **Indices** of :meth:`batch` (and so of :meth:`split`, :meth:`bootstrap`) number the stored
    transitions oldest first, ``0 .. len(buffer) - 1``; adding steps shifts them.

    Args:
        obs_shape: shape of one observation i, e.g. ``(64, 64, 3)`` for frames, ``(O,)`` for states.
        act_dim: A, the size of an action u.
        capacity: most steps kept.
        max_episodes: most episodes kept; default ``min(capacity, max(1000, capacity // 50))``, enough
            for episodes of 50 steps on average. Raise it for many short episodes; it costs one
            observation each.
        device: where the storage lives (``"cpu"``, ``"cuda"``, ``"auto"``).
        dtype: floating dtype of actions and rewards.
        obs_dtype: dtype of observations: ``torch.uint8`` for pixels, a floating one for states.
    """

    _STEP_FIELDS = ("obs", "action", "reward", "terminated", "truncated")

    def __init__(
        self,
        obs_shape: tuple[int, ...] | int,
        act_dim: int,
        capacity: int = 100_000,
        *,
        max_episodes: int | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        obs_dtype: torch.dtype = torch.float32,
    ) -> None:
        obs_shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
        self.obs_shape = tuple(check_positive_int(f"obs_shape[{k}]", n) for k, n in enumerate(obs_shape))
        self.act_dim = check_positive_int("act_dim", act_dim)
        self.capacity = check_positive_int("capacity", capacity)
        default_episodes = min(self.capacity, max(1000, self.capacity // 50))
        self.max_episodes = check_positive_int(
            "max_episodes", default_episodes if max_episodes is None else max_episodes)
        if not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating dtype, got {dtype}")
        if obs_dtype == torch.bool or obs_dtype.is_complex:
            raise TypeError(f"obs_dtype: expected a floating or integer dtype, got {obs_dtype}")
        self.device = resolve_device(device)
        self.dtype, self.obs_dtype = dtype, obs_dtype
        C, E = self.capacity, self.max_episodes
        # torch.empty: a slot is read only after it was written, so nothing is touched before it is used
        self._steps = {
            "obs": torch.empty(C, *self.obs_shape, device=self.device, dtype=obs_dtype),
            "action": torch.empty(C, self.act_dim, device=self.device, dtype=dtype),
            "reward": torch.empty(C, device=self.device, dtype=dtype),
            "terminated": torch.empty(C, device=self.device, dtype=torch.bool),
            "truncated": torch.empty(C, device=self.device, dtype=torch.bool),
        }
        self._last_next_obs = torch.empty(E, *self.obs_shape, device=self.device, dtype=obs_dtype)
        # Step n (counted over the buffer's life) lives in slot n % C, episode e in slot e % E.
        self._total = 0  # steps ever added
        self._first_episode = 0  # number of the oldest stored episode
        self._starts: deque[int] = deque()  # first step of each stored episode, oldest first
        self._running = False  # whether the newest episode may still grow

    @property
    def obs_dim(self) -> int | None:
        """O for flat observations ``(O,)`` (what transition models check), None for frames."""
        return self.obs_shape[0] if len(self.obs_shape) == 1 else None

    @property
    def episodes(self) -> int:
        """Number of stored episodes, the running one included."""
        return len(self._starts)

    @property
    def nbytes(self) -> int:
        """Bytes of the storage tensors, all allocated at construction."""
        return sum(t.nbytes for t in self._steps.values()) + self._last_next_obs.nbytes

    def __len__(self) -> int:
        """Number of stored transitions (steps)."""
        return self._total - self._starts[0] if self._starts else 0

    # ------------------------------------------------------------------ adding
    def add(self, obs, action, reward, next_obs, terminated, truncated=False) -> None:
        """D_real := D_real ∪ (i, u, g_i, i'): store one step of the running episode.

        Args:
            obs: i, shape ``obs_shape``.
            action: u, shape (A,).
            reward: g_i, a number or shape ().
            next_obs: i', shape ``obs_shape``; kept as the episode's last next observation until
                the next step brings it as its ``obs``.
            terminated: whether i' is terminal (bool or 0/1).
            truncated: whether the episode was cut after this step without i' being terminal.
        """
        obs = _validated("obs", obs, self.obs_shape, self.obs_dtype, self.device)
        step = {
            "obs": obs,
            "action": _validated("action", action, (self.act_dim,), self.dtype, self.device),
            "reward": _validated("reward", reward, (), self.dtype, self.device),
            "terminated": _validated("terminated", terminated, (), torch.bool, self.device),
            "truncated": _validated("truncated", truncated, (), torch.bool, self.device),
        }
        next_obs = _validated("next_obs", next_obs, self.obs_shape, self.obs_dtype, self.device)
        if self._running and not torch.equal(obs, self._last_next_obs[self._episode_slot(-1)]):
            self._steps["truncated"][(self._total - 1) % self.capacity] = True  # a reset nobody flagged
            self._running = False
        if not self._running:
            self._begin_episode()
        self._make_room()
        for key, value in step.items():
            self._steps[key][self._total % self.capacity] = value
        self._last_next_obs[self._episode_slot(-1)] = next_obs
        self._total += 1
        self._running = not bool(step["terminated"] | step["truncated"])

    def _episode_slot(self, k: int) -> int:
        """Slot of the k-th stored episode's last next observation (negative k counts from the newest)."""
        return (self._first_episode + k % len(self._starts)) % self.max_episodes

    def _begin_episode(self) -> None:
        if len(self._starts) == self.max_episodes:
            self._drop_oldest_episode()
        self._starts.append(self._total)

    def _make_room(self) -> None:
        """Free slot ``_total % capacity`` for the next step: drop whole oldest episodes until it is free."""
        while self._total - self._starts[0] >= self.capacity:
            if len(self._starts) > 1:
                self._drop_oldest_episode()
            else:  # the running episode alone is longer than the capacity: it loses its oldest step
                self._starts[0] += 1

    def _drop_oldest_episode(self) -> None:
        self._starts.popleft()
        self._first_episode += 1

    # ------------------------------------------------------------------ reading
    def _episode_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """First step and length of each stored episode, oldest first: (N,), (N,) on the device."""
        bounds = torch.tensor([*self._starts, self._total], device=self.device)
        return bounds[:-1], bounds.diff()

    def _chunks(self, starts: torch.Tensor, lengths: torch.Tensor, episode: torch.Tensor, offset: torch.Tensor,
                length: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Steps s .. s+L-1 (s = ``offset (B,)``) of the stored episodes ``episode (B,)``, zero past their ends.

        One gather of the L + 1 observations i_s .. i_{s+L} gives both i_t and i_{t+1}; at an
        episode's last step, i_{t+1} is the episode's kept last next observation instead.

        Returns:
            the fields ``obs (B, L, *obs_shape)``, ``action (B, L, A)``, ``reward (B, L)``,
            ``next_obs (B, L, *obs_shape)``, ``terminated (B, L)``, and ``mask (B, L)``, True on real steps.
        """
        n = lengths[episode]  # (B,)
        valid = (n - offset).clamp_max(length)  # real steps in each chunk, ≥ 1
        j = torch.arange(length + 1, device=self.device)
        t = starts[episode, None] + torch.minimum(offset[:, None] + j, n[:, None] - 1)  # padding repeats the end
        slots = t % self.capacity  # (B, L + 1)
        mask = j[:-1] < valid[:, None]  # (B, L)
        frames = _take(self._steps["obs"], slots)  # i_s .. i_{s+L}
        fields = {key: _take(self._steps[key], slots[:, :-1]) for key in ("action", "reward", "terminated")}
        fields |= {"obs": frames[:, :-1], "next_obs": frames[:, 1:]}
        fields = {key: value * _trailing(mask, value) for key, value in fields.items()}  # zero padding
        ends_here = offset + length >= n  # the chunk holds its episode's last step, at valid - 1
        kept = _take(self._last_next_obs, (self._first_episode + episode) % self.max_episodes)  # (B, *obs_shape)
        rows, last = torch.arange(len(episode), device=self.device), valid - 1
        next_obs = fields["next_obs"]
        next_obs[rows, last] = torch.where(_trailing(ends_here, kept), kept, next_obs[rows, last])
        return fields, mask

    def batch(self, indices: torch.Tensor, *, check: bool = True) -> Batch:
        """Transitions ``indices`` (oldest first, in [0, len)): (n,) a plain batch, (K, n) one with a K axis.

        Shapes: ``obs (n, *obs_shape)`` in ``obs_dtype``, ``action (n, A)``, ``reward (n,)``,
        ``next_obs (n, *obs_shape)``, ``terminated (n,)``; a leading K for (K, n) indices.
        ``check=False`` skips the range check (a device sync).
        """
        indices = self._check_indices(indices, check)
        starts, lengths = self._episode_bounds()
        t = (self._starts[0] if self._starts else 0) + indices.reshape(-1).long()  # step numbers
        episode = (torch.searchsorted(starts, t, right=True) - 1).clamp_min(0)
        fields, _ = self._chunks(starts, lengths, episode, t - starts[episode], 1)  # chunks of one step
        return Batch(**{key: value[:, 0].reshape(*indices.shape, *value.shape[2:]) for key, value in fields.items()})

    def all(self) -> Batch:
        """Every stored transition, oldest first: obs (len, *obs_shape), ..."""
        return self.batch(torch.arange(len(self), device=self.device), check=False)

    def sample_sequences(
        self,
        batch_size: int,
        length: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> SequenceBatch:
        """B chunks of L consecutive steps, each inside one episode, padded where the episode is shorter.

        The start is uniform over the valid starts: an episode of n steps offers the starts
        s = 0 .. n − L (n − L + 1 of them) when n ≥ L, else the one start s = 0 (a chunk of n
        steps and L − n padding). Each chunk independently draws one of the K = Σ_e max(n_e − L + 1, 1)
        starts with probability 1/K (with replacement): longer episodes give more chunks, and a
        step near an episode's ends falls in fewer chunks than one in the middle.

        Args:
            batch_size: B ≥ 1.
            length: L ≥ 1.
            generator: torch generator for the starts.
            device: where the chunks go (default: the buffer's device).
        Returns:
            a :class:`SequenceBatch`: ``obs (B, L, *obs_shape)`` in ``obs_dtype``, ``action (B, L, A)``,
            ``reward (B, L)``, ``next_obs (B, L, *obs_shape)``, ``terminated (B, L)``, ``mask (B, L)``;
            padding is zero (False) and has ``mask`` False.
        """
        batch_size = check_positive_int("batch_size", batch_size)
        length = check_positive_int("length", length)
        self._require()
        starts, lengths = self._episode_bounds()
        n_starts = (lengths - length + 1).clamp_min(1)  # max(n_e − L + 1, 1) starts per episode
        cumulative = n_starts.cumsum(0)
        draw = _random_ints(int(cumulative[-1]), (batch_size,), generator, self.device)  # uniform over K
        episode = torch.searchsorted(cumulative, draw, right=True)  # (B,)
        offset = draw - (cumulative[episode] - n_starts[episode])  # s: the chunk's start in its episode
        fields, mask = self._chunks(starts, lengths, episode, offset, length)
        return SequenceBatch(**fields, mask=mask).to(device)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The stored steps and last next observations, oldest first, and the episode lengths."""
        _, lengths = self._episode_bounds()
        slots = (self._total - len(self) + torch.arange(len(self), device=self.device)) % self.capacity
        episodes = (self._first_episode + torch.arange(self.episodes, device=self.device)) % self.max_episodes
        return {
            "obs_shape": self.obs_shape,
            "act_dim": self.act_dim,
            "capacity": self.capacity,
            "max_episodes": self.max_episodes,
            "episode_lengths": lengths.cpu(),
            "running": self._running,
            "last_next_obs": self._last_next_obs[episodes].clone(),
            **{key: value[slots].clone() for key, value in self._steps.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; a smaller buffer keeps the newest whole episodes that fit."""
        if tuple(state["obs_shape"]) != self.obs_shape or state["act_dim"] != self.act_dim:
            raise ValueError(f"state_dict: holds obs_shape={tuple(state['obs_shape'])}, act_dim={state['act_dim']}; "
                             f"this buffer has obs_shape={self.obs_shape}, act_dim={self.act_dim}")
        saved = [int(n) for n in state["episode_lengths"]]
        keep = len(saved)  # the newest `keep` episodes, as FIFO eviction would have left them here
        while keep > self.max_episodes or (keep > 1 and sum(saved[-keep:]) > self.capacity):
            keep -= 1
        lengths = saved[len(saved) - keep:]
        if lengths:
            lengths[0] = min(lengths[0], self.capacity)  # an episode longer than the capacity keeps its end
        n = sum(lengths)
        for key, value in self._steps.items():
            value[:n] = state[key][len(state[key]) - n:].to(device=self.device, dtype=value.dtype)
        self._last_next_obs[:keep] = state["last_next_obs"][len(saved) - keep:].to(self.device)
        self._total, self._first_episode = n, 0
        self._starts = deque(int(s) for s in np.cumsum([0, *lengths])[:-1])
        self._running = bool(state["running"]) and keep > 0

    def __repr__(self) -> str:
        return (f"EpisodeBuffer(obs_shape={self.obs_shape}, act_dim={self.act_dim}, len={len(self)}, "
                f"episodes={self.episodes}, capacity={self.capacity}, device={self.device})")


def _take(storage: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """``storage[slots]``: (..., *row) for ``slots (...)``, by ``index_select`` (far faster than fancy indexing on CPU)."""
    return storage.index_select(0, slots.reshape(-1)).reshape(*slots.shape, *storage.shape[1:])


def _trailing(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``mask (...)`` with singleton axes appended to broadcast against ``like (..., *event)``."""
    return mask.reshape(*mask.shape, *([1] * (like.dim() - mask.dim())))


def _saved(state: dict[str, Any], key: str, size: int) -> torch.Tensor:
    """``state[key]``; a ``truncated`` missing from an older state dict reads as all False."""
    if key == "truncated" and key not in state:
        return torch.zeros(size, dtype=torch.bool)
    return state[key]


class Normalizer(torch.nn.Module):
    """Standardisation x̃ = (x − m) / s with m, s the per-dimension mean and std of fitted data.

    ``mean`` and ``std`` are registered buffers: they move with ``.to(device)`` and are saved in
    ``state_dict``. Before :meth:`fit` the map is the identity (m = 0, s = 1).

    Args:
        dim: size of the last axis of x.
        eps: s is clamped at ``eps`` so constant features do not divide by zero.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, dim: int, eps: float = 1e-6, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.dim = check_positive_int("dim", dim)
        self.eps = check_positive_float("eps", eps)
        device = resolve_device(device)
        self.register_buffer("mean", torch.zeros(self.dim, device=device, dtype=dtype))
        self.register_buffer("std", torch.ones(self.dim, device=device, dtype=dtype))

    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """m := mean_n x_n, s := max(sqrt(mean_n (x_n − m)²), eps) over the rows of ``x: (n, dim)``."""
        x = as_tensor("x", x)
        check_shape("x", x, ("n", self.dim))
        check_finite("x", x)
        if x.shape[0] == 0:
            raise ValueError("x: expected at least one row to fit, got none")
        x = x.to(device=self.mean.device, dtype=self.mean.dtype)
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0, correction=0).clamp_min(self.eps))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """x̃ = (x − m) / s over the last axis; ``x: (..., dim)``."""
        return (x - self.mean) / self.std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """x = x̃ s + m over the last axis; ``x: (..., dim)``."""
        return x * self.std + self.mean

    def scale_variance(self, var: torch.Tensor) -> torch.Tensor:
        """Var[x] = Var[x̃] s²: a variance in normalised units back to raw units; ``var: (..., dim)``."""
        return var * self.std.square()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, eps={self.eps}"
