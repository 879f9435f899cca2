"""Tests for mbrl_course.data: the replay buffer D_real, its splits and bootstraps, the normaliser."""

from __future__ import annotations

import io
import math
from collections import deque

import numpy as np
import pytest
import torch

from mbrl_course.data import Batch, Normalizer, ReplayBuffer


def _transition(t: float, obs_dim: int = 3, act_dim: int = 2):
    """A transition whose every entry encodes its time step t."""
    return (
        np.full(obs_dim, t), np.full(act_dim, -t), float(10 * t), np.full(obs_dim, t + 0.5), t % 3 == 0
    )


def _filled(n: int, capacity: int = 100, dtype=torch.float64) -> ReplayBuffer:
    buffer = ReplayBuffer(3, 2, capacity=capacity, dtype=dtype)
    for t in range(n):
        buffer.add(*_transition(t))
    return buffer


# ---------------------------------------------------------------------- adding and the ring
def test_ring_buffer_overwrites_oldest_first():
    capacity, total = 5, 13
    oracle = deque(maxlen=capacity)  # Python's own ring of the last `capacity` items
    buffer = ReplayBuffer(3, 2, capacity=capacity, dtype=torch.float64)
    for t in range(total):
        buffer.add(*_transition(t))
        oracle.append(t)
        assert len(buffer) == len(oracle)
    everything = buffer.all()
    assert everything.obs[:, 0].tolist() == list(oracle)  # oldest first
    assert everything.reward.tolist() == [10.0 * t for t in oracle]
    assert everything.terminated.tolist() == [t % 3 == 0 for t in oracle]
    # slot s holds the last t with t % capacity == s
    slots = buffer.batch(torch.arange(capacity)).obs[:, 0].tolist()
    assert slots == [max(t for t in range(total) if t % capacity == s) for s in range(capacity)]


def test_add_batch_equals_one_by_one_and_keeps_the_newest_when_too_many():
    capacity = 7
    one_by_one = _filled(19, capacity=capacity)
    batched = ReplayBuffer(3, 2, capacity=capacity, dtype=torch.float64)
    rows = [_transition(t) for t in range(19)]
    columns = [np.stack([np.asarray(r[i]) for r in rows]) for i in range(5)]
    batched.add_batch(*(c[:4] for c in columns))
    batched.add_batch(*(c[4:] for c in columns))  # 15 > capacity: only the newest 7 survive
    for a, b in zip(vars(one_by_one.all()).values(), vars(batched.all()).values()):
        assert torch.equal(a, b)


def test_add_accepts_tensors_numbers_and_arrays():
    buffer = ReplayBuffer(2, 1, capacity=4)
    buffer.add(torch.tensor([1.0, 2.0]), np.array([0.5]), 3, [2.0, 3.0], False)
    buffer.add(np.array([1.0, 2.0]), torch.tensor([0.5]), np.float32(1.5), torch.tensor([0.0, 0.0]), 1)
    batch = buffer.all()
    assert batch.reward.tolist() == [3.0, 1.5]
    assert batch.terminated.dtype == torch.bool and batch.terminated.tolist() == [False, True]
    assert batch.obs.dtype == torch.float32


def test_stored_tensors_are_detached_from_autograd():
    buffer = ReplayBuffer(2, 1, capacity=4)
    obs = torch.ones(3, 2, requires_grad=True)
    buffer.add_batch(obs * 2, torch.zeros(3, 1), torch.zeros(3), obs + 1, torch.zeros(3))
    batch = buffer.all()
    assert not batch.obs.requires_grad and not batch.next_obs.requires_grad
    assert batch.obs.tolist() == [[2.0, 2.0]] * 3


@pytest.mark.parametrize(
    "arg, value, message",
    [
        ("next_obs", np.zeros(4), "next_obs: expected shape (3,), got (4,)"),
        ("obs", np.zeros((1, 3)), "obs: expected shape (3,), got (1, 3)"),
        ("action", np.zeros(3), "action: expected shape (2,), got (3,)"),
        ("reward", np.zeros(2), "reward: expected shape (), got (2,)"),
    ],
)
def test_add_refuses_wrong_shapes_naming_the_argument(arg, value, message):
    buffer = ReplayBuffer(3, 2, capacity=4)
    kwargs = dict(obs=np.zeros(3), action=np.zeros(2), reward=0.0, next_obs=np.zeros(3), terminated=False)
    kwargs[arg] = value
    with pytest.raises(ValueError) as err:
        buffer.add(**kwargs)
    assert message in str(err.value)
    assert len(buffer) == 0


@pytest.mark.parametrize("arg", ["obs", "action", "reward", "next_obs"])
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_add_refuses_nan_and_inf(arg, bad):
    buffer = ReplayBuffer(3, 2, capacity=4)
    kwargs = dict(obs=np.zeros(3), action=np.zeros(2), reward=0.0, next_obs=np.zeros(3), terminated=False)
    kwargs[arg] = np.full_like(np.asarray(kwargs[arg], dtype=float), bad)
    with pytest.raises(ValueError, match=f"^{arg}: expected finite values"):
        buffer.add(**kwargs)


def test_add_batch_refuses_mismatched_batch_sizes_and_nan():
    buffer = ReplayBuffer(3, 2, capacity=10)
    good = dict(obs=np.zeros((4, 3)), action=np.zeros((4, 2)), reward=np.zeros(4), next_obs=np.zeros((4, 3)),
                terminated=np.zeros(4))
    with pytest.raises(ValueError, match=r"reward: expected shape \(4,\), got \(3,\)"):
        buffer.add_batch(**{**good, "reward": np.zeros(3)})
    with pytest.raises(ValueError, match=r"action: expected shape \(4, 2\), got \(4, 1\)"):
        buffer.add_batch(**{**good, "action": np.zeros((4, 1))})
    bad_obs = good["next_obs"].copy()
    bad_obs[2, 1] = np.nan
    with pytest.raises(ValueError, match="next_obs: expected finite values, got 1 NaN/inf"):
        buffer.add_batch(**{**good, "next_obs": bad_obs})
    assert len(buffer) == 0


def test_constructor_refuses_bad_arguments():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(3, 2, capacity=0)
    with pytest.raises(TypeError, match="obs_dim"):
        ReplayBuffer(3.5, 2)
    with pytest.raises(TypeError, match="dtype"):
        ReplayBuffer(3, 2, dtype=torch.int64)


# ---------------------------------------------------------------------- reading
def test_sample_shapes_dtypes_device_and_values_come_from_the_buffer():
    buffer = _filled(9, capacity=50, dtype=torch.float32)
    batch = buffer.sample(32, generator=torch.Generator().manual_seed(0))
    assert isinstance(batch, Batch) and len(batch) == 32
    assert batch.obs.shape == (32, 3) and batch.next_obs.shape == (32, 3)
    assert batch.action.shape == (32, 2) and batch.reward.shape == (32,) and batch.terminated.shape == (32,)
    assert batch.obs.dtype == torch.float32 and batch.terminated.dtype == torch.bool
    assert all(t.device == torch.device("cpu") for t in vars(batch).values())
    t = batch.obs[:, 0]
    assert set(t.tolist()) <= set(range(9))
    # every field of a sampled row belongs to the same transition
    assert torch.equal(batch.action[:, 0], -t) and torch.equal(batch.reward, 10 * t)
    assert torch.equal(batch.next_obs[:, 1], t + 0.5)
    assert torch.equal(batch.terminated, t.long() % 3 == 0)


def test_sample_is_uniform_with_replacement_and_seeded():
    buffer = _filled(4)
    draws = buffer.sample(40_000, generator=torch.Generator().manual_seed(1)).obs[:, 0].long()
    freq = torch.bincount(draws, minlength=4).double() / draws.numel()
    assert torch.allclose(freq, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01)
    again = buffer.sample(40_000, generator=torch.Generator().manual_seed(1)).obs[:, 0].long()
    assert torch.equal(draws, again)
    with pytest.raises(ValueError, match="at least 1 transition"):
        ReplayBuffer(3, 2, capacity=4).sample(2)


@pytest.mark.parametrize("n, fraction, n_val", [(10, 0.2, 2), (10, 0.0, 0), (3, 0.1, 1), (1, 0.5, 0), (50, 0.33, 16)])
def test_split_partitions_the_slots(n, fraction, n_val):
    buffer = _filled(n)
    train, val = buffer.split(fraction, generator=torch.Generator().manual_seed(0))
    assert train.dtype == torch.long and val.dtype == torch.long
    assert len(val) == n_val and len(train) == n - n_val
    assert sorted(torch.cat([train, val]).tolist()) == list(range(n))  # disjoint and covering
    with pytest.raises(ValueError, match="val_fraction"):
        buffer.split(1.0)


def test_bootstrap_resamples_the_given_indices_with_replacement():
    buffer = _filled(60)
    indices = torch.tensor([3, 5, 8, 13, 21, 34, 55] * 7)  # n = 49, values repeat
    members = buffer.bootstrap(2000, indices, generator=torch.Generator().manual_seed(0))
    assert members.shape == (2000, 49) and members.dtype == torch.long
    assert set(members.unique().tolist()) <= set(indices.tolist())
    # each entry is a uniform draw from the 49 positions, so a row's count of the value 55 (7 of the
    # 49 positions) is Binomial(49, 1/7): mean 7, variance 6
    counts = (members == 55).sum(1).double()
    assert abs(counts.mean().item() - 7.0) < 0.25  # ~4.5 standard errors
    assert abs(counts.var().item() - 6.0) < 0.8
    distinct = torch.tensor([len(set(row.tolist())) for row in buffer.bootstrap(
        300, torch.arange(40), generator=torch.Generator().manual_seed(1))], dtype=torch.float64)
    expected = 40 * (1 - (1 - 1 / 40) ** 40)  # expected number of distinct items in 40 draws with replacement
    assert abs(distinct.mean().item() - expected) < 0.5
    assert not torch.equal(members[0], members[1])


def test_batch_with_member_axis_matches_row_by_row():
    buffer = _filled(20)
    indices = torch.tensor([[0, 1, 2, 2], [5, 5, 5, 19], [7, 3, 1, 0]])
    batch = buffer.batch(indices)
    assert batch.obs.shape == (3, 4, 3) and batch.reward.shape == (3, 4) and len(batch) == 4
    for k in range(3):
        row = buffer.batch(indices[k])
        assert all(torch.equal(getattr(batch, f)[k], getattr(row, f)) for f in vars(row))
    with pytest.raises(ValueError, match="indices"):
        buffer.batch(torch.tensor([20]))
    with pytest.raises(ValueError, match="indices"):
        buffer.batch(torch.zeros(2, 2, 2, dtype=torch.long))


def test_batch_to_and_slice():
    batch = _filled(6).all()
    moved = batch.to("cpu")
    assert torch.equal(moved.obs, batch.obs)
    single = batch.to(dtype=torch.float32)
    assert single.obs.dtype == single.reward.dtype == torch.float32 and single.terminated.dtype == torch.bool
    part = batch.slice(2, 5)
    assert len(part) == 3 and torch.equal(part.obs, batch.obs[2:5]) and torch.equal(part.reward, batch.reward[2:5])


def test_state_dict_round_trip_continues_the_ring():
    buffer = _filled(23, capacity=10)
    stream = io.BytesIO()
    torch.save(buffer.state_dict(), stream)
    stream.seek(0)
    restored = ReplayBuffer(3, 2, capacity=10, dtype=torch.float64)
    restored.load_state_dict(torch.load(stream))
    assert len(restored) == len(buffer)
    for a, b in zip(vars(buffer.all()).values(), vars(restored.all()).values()):
        assert torch.equal(a, b)
    for t in range(23, 27):  # both keep overwriting the same slots
        buffer.add(*_transition(t))
        restored.add(*_transition(t))
    assert torch.equal(buffer.batch(torch.arange(10)).obs, restored.batch(torch.arange(10)).obs)
    # another capacity: re-added oldest first, the newest kept
    small = ReplayBuffer(3, 2, capacity=4, dtype=torch.float64)
    small.load_state_dict(buffer.state_dict())
    assert small.all().obs[:, 0].tolist() == [23.0, 24.0, 25.0, 26.0]
    with pytest.raises(ValueError, match="obs_dim"):
        ReplayBuffer(4, 2, capacity=10).load_state_dict(buffer.state_dict())


# ---------------------------------------------------------------------- episode boundaries
def _episodes_stream(lengths, cut):
    """Transitions of episodes with the given lengths; episode k ends terminated, or truncated when cut[k]."""
    rows = []
    for k, n in enumerate(lengths):
        for t in range(n):
            last = t == n - 1
            rows.append((*_transition(len(rows))[:4], last and not cut[k], last and cut[k]))
    return rows


def test_episode_ends_follow_terminated_and_truncated_through_the_wrap():
    lengths, cut = [3, 1, 4, 2, 5, 3], [False, True, True, False, True, False]
    rows = _episodes_stream(lengths, cut)
    ends = [r[4] or r[5] for r in rows]  # the oracle: a plain list of every transition's end flag
    capacity = 7
    buffer = ReplayBuffer(3, 2, capacity=capacity, dtype=torch.float64)
    for n, row in enumerate(rows, 1):
        buffer.add(*row[:5], truncated=row[5])
        assert buffer.episode_ends().tolist() == ends[max(0, n - capacity):n]
    assert buffer.all().obs[:, 0].tolist() == list(range(len(rows) - capacity, len(rows)))
    # terminated stays the env's flag: a truncated end is not terminal
    assert buffer.all().terminated.tolist() == [r[4] for r in rows[-capacity:]]


def test_add_batch_and_state_dicts_keep_the_boundaries():
    rows = _episodes_stream([2, 3, 1, 4], [True, False, True, True])
    columns = [np.stack([np.asarray(r[i]) for r in rows]) for i in range(6)]
    buffer = ReplayBuffer(3, 2, capacity=6, dtype=torch.float64)
    buffer.add_batch(*columns[:5], truncated=columns[5])
    ends = [r[4] or r[5] for r in rows][-6:]
    assert buffer.episode_ends().tolist() == ends
    same = ReplayBuffer(3, 2, capacity=6, dtype=torch.float64)
    same.load_state_dict(buffer.state_dict())
    assert same.episode_ends().tolist() == ends
    bigger = ReplayBuffer(3, 2, capacity=20, dtype=torch.float64)  # the re-adding path
    bigger.load_state_dict(buffer.state_dict())
    assert bigger.episode_ends().tolist() == ends
    plain = ReplayBuffer(3, 2, capacity=6, dtype=torch.float64)
    plain.add_batch(*columns[:5])  # no truncated given: only the terminated ends
    assert plain.episode_ends().tolist() == [bool(r[4]) for r in rows][-6:]


@pytest.mark.parametrize("capacity", [6, 20])
def test_state_dict_without_truncated_from_older_buffers_still_loads(capacity):
    buffer = _filled(9, capacity=6)
    state = buffer.state_dict()
    del state["truncated"]  # what a checkpoint written before episode boundaries holds
    restored = ReplayBuffer(3, 2, capacity=capacity, dtype=torch.float64)
    restored.load_state_dict(state)
    for a, b in zip(vars(buffer.all()).values(), vars(restored.all()).values()):
        assert torch.equal(a, b)
    assert restored.episode_ends().tolist() == [t % 3 == 0 for t in range(3, 9)]  # the terminated ones


def test_truncated_is_validated_like_terminated():
    buffer = ReplayBuffer(3, 2, capacity=4)
    with pytest.raises(ValueError, match=r"truncated: expected shape \(\), got \(2,\)"):
        buffer.add(np.zeros(3), np.zeros(2), 0.0, np.zeros(3), False, truncated=[True, False])
    with pytest.raises(ValueError, match=r"truncated: expected shape \(2,\), got \(3,\)"):
        buffer.add_batch(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2), np.zeros((2, 3)), np.zeros(2),
                         truncated=np.zeros(3))
    assert len(buffer) == 0


# ---------------------------------------------------------------------- normaliser
def test_normalizer_matches_numpy_and_round_trips():
    rng = np.random.default_rng(0)
    x = rng.normal(loc=[1.0, -3.0, 0.0], scale=[2.0, 0.1, 5.0], size=(500, 3))
    norm = Normalizer(3, dtype=torch.float64)
    assert torch.equal(norm.normalize(torch.tensor(x)), torch.tensor(x))  # identity before fit
    norm.fit(torch.tensor(x))
    np.testing.assert_allclose(norm.mean.numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(norm.std.numpy(), x.std(0), rtol=1e-12)
    z = norm.normalize(torch.tensor(x))
    np.testing.assert_allclose(z.mean(0).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(0, correction=0).numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(norm.denormalize(z).numpy(), x, rtol=1e-12, atol=1e-12)
    var = torch.rand(4, 3, dtype=torch.float64)
    np.testing.assert_allclose(norm.scale_variance(var).numpy(), var.numpy() * x.std(0) ** 2, rtol=1e-12)


def test_normalizer_clamps_constant_features_and_is_a_module():
    norm = Normalizer(2, eps=1e-3)
    norm.fit(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
    assert norm.std.tolist() == pytest.approx([1.0, 1e-3])
    state = norm.state_dict()
    assert set(state) == {"mean", "std"}
    other = Normalizer(2)
    other.load_state_dict(state)
    assert torch.equal(other.mean, norm.mean)
    assert norm.to(torch.float64).mean.dtype == torch.float64
    with pytest.raises(ValueError, match=r"x: expected shape \(n, 2\)"):
        norm.fit(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="x: expected finite"):
        norm.fit(torch.tensor([[math.nan, 1.0]]))
