"""Tests for mbrl_course.data.EpisodeBuffer: D_real as whole episodes, chunks for sequence models.

The oracle is a plain Python list of the recorded episodes (numpy arrays per step) and a few lines
that say which episodes FIFO eviction of whole episodes leaves; every sampled chunk must be a slice
of one of those episodes.
"""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
import pytest
import torch

from mbrl_course.data import Batch, EpisodeBuffer, SequenceBatch

FRAME = (4, 5, 3)  # small uint8 frames: channel 0 = episode number, channel 1 = step, channel 2 = noise


def _record(lengths, rng, *, cut=(), obs_shape=FRAME, act_dim=2):
    """Episodes as lists of steps (obs, action, reward, next_obs, terminated, truncated); episode k ends
    truncated when k is in ``cut``, terminated otherwise, and the last one (length given negative) runs on."""
    episodes = []
    for k, n in enumerate(lengths):
        running, n = n < 0, abs(n)
        frames = rng.integers(0, 256, size=(n + 1, *obs_shape), dtype=np.uint8)
        if len(obs_shape) == 3:
            frames[..., 0], frames[..., 1] = k, np.arange(n + 1)[:, None, None]
        steps = []
        for t in range(n):
            last = t == n - 1 and not running
            steps.append((frames[t], rng.normal(size=act_dim).astype(np.float32), float(rng.normal()),
                          frames[t + 1], last and k not in cut, last and k in cut))
        episodes.append(steps)
    return episodes


def _fill(buffer, episodes):
    for steps in episodes:
        for obs, action, reward, next_obs, terminated, truncated in steps:
            buffer.add(obs, action, reward, next_obs, terminated, truncated=truncated)


def _stored(episodes, capacity, max_episodes):
    """The oracle of FIFO eviction of whole episodes: the newest episodes that fit both limits, as
    (episode number, first kept step); only a lone episode longer than the capacity loses its start."""
    keep = []
    for k in reversed(range(len(episodes))):
        n = len(episodes[k])
        if len(keep) == max_episodes or (keep and sum(len(episodes[j]) for j, _ in keep) + n > capacity):
            break
        keep.insert(0, (k, max(0, n - capacity)))
    return keep


def _check_chunks(batch: SequenceBatch, episodes, stored, length):
    """Every chunk is a slice of a stored episode from a valid start, zero-padded where the episode ends."""
    kept = dict(stored)
    for b in range(len(batch)):
        k, s = int(batch.obs[b, 0, 0, 0, 0]), int(batch.obs[b, 0, 0, 0, 1])
        assert k in kept, f"chunk {b} comes from episode {k}, which was evicted"
        steps = episodes[k][kept[k]:]
        s -= kept[k]
        n = len(steps)
        assert 0 <= s <= max(n - length, 0), f"chunk {b} starts at {s} in an episode of {n} steps"
        valid = min(length, n - s)
        assert batch.mask[b].tolist() == [j < valid for j in range(length)]
        window = steps[s:s + valid]
        for j, name in enumerate(("obs", "action", "reward", "next_obs", "terminated")):
            expected = np.stack([np.asarray(step[j]) for step in window])
            got = getattr(batch, name)[b]
            np.testing.assert_array_equal(got[:valid].numpy(), expected.astype(got.numpy().dtype))
            assert not got[valid:].any(), f"{name}: padding of chunk {b} is not zero"


# ---------------------------------------------------------------------- chunks
@pytest.mark.parametrize(
    "lengths, capacity, max_episodes, length",
    [
        ([7, 3, 12, 1, 9, 5, 14, 2, 6], 30, 100, 5),  # eviction by steps
        ([7, 3, 12, 1, 9, 5, 14, 2, 6], 1000, 3, 4),  # eviction by the number of episodes
        ([4, 2, 25], 10, 10, 6),  # one episode longer than the capacity keeps its newest steps
        ([3, 8, -6], 1000, 100, 50),  # chunks longer than every episode: all padded; the last one running
    ],
)
def test_chunks_are_slices_of_stored_episodes_and_never_cross_a_boundary(lengths, capacity, max_episodes, length):
    rng = np.random.default_rng(0)
    episodes = _record(lengths, rng, cut={1, 4})
    buffer = EpisodeBuffer(FRAME, 2, capacity=capacity, max_episodes=max_episodes, obs_dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    for k in range(len(episodes)):  # check after every episode: before and after each eviction
        _fill(buffer, episodes[k:k + 1])
        stored = _stored(episodes[:k + 1], capacity, max_episodes)
        assert buffer.episodes == len(stored)
        assert len(buffer) == sum(len(episodes[j]) - first for j, first in stored)
        batch = buffer.sample_sequences(64, length, generator=generator)
        _check_chunks(batch, episodes, stored, length)


def test_starts_are_uniform_over_the_valid_starts():
    lengths, length = [2, 5, 9, 4], 4  # valid starts: 1 (padded) + 2 + 6 + 1 = 10
    episodes = _record(lengths, np.random.default_rng(1))
    buffer = EpisodeBuffer(FRAME, 2, capacity=100, obs_dtype=torch.uint8)
    _fill(buffer, episodes)
    draws = 100_000
    batch = buffer.sample_sequences(draws, length, generator=torch.Generator().manual_seed(3))
    counts = Counter(zip(batch.obs[:, 0, 0, 0, 0].tolist(), batch.obs[:, 0, 0, 0, 1].tolist()))
    valid = {(k, s) for k, n in enumerate(lengths) for s in range(max(n - length, 0) + 1)}
    assert set(counts) == valid
    frequency = np.array([counts[start] for start in sorted(valid)]) / draws
    # each frequency is a Binomial(draws, 1/10) share: standard deviation 0.00095
    np.testing.assert_allclose(frequency, 1 / len(valid), atol=0.004)


def test_the_running_episode_ends_with_the_next_obs_of_its_last_step():
    episodes = _record([3, -4], np.random.default_rng(2))
    buffer = EpisodeBuffer(FRAME, 2, capacity=100, obs_dtype=torch.uint8)
    _fill(buffer, episodes)
    batch = buffer.sample_sequences(32, 4, generator=torch.Generator().manual_seed(0))
    running = batch.obs[:, 0, 0, 0, 0] == 1
    assert running.any()
    assert (batch.next_obs[running, 3] == torch.from_numpy(episodes[1][-1][3])).all()
    # the next step continues the episode: its obs is that next_obs
    extra = _record([1, -1], np.random.default_rng(3))[1][0]
    buffer.add(episodes[1][-1][3], *extra[1:4], True)
    assert buffer.episodes == 2 and len(buffer) == 8


def test_a_reset_nobody_flagged_still_starts_a_new_episode():
    episodes = _record([-5, -4, -6], np.random.default_rng(4))  # no terminated, no truncated anywhere
    buffer = EpisodeBuffer(FRAME, 2, capacity=100, obs_dtype=torch.uint8)
    _fill(buffer, episodes)  # each episode's first obs differs from the previous episode's last next_obs
    assert buffer.episodes == 3
    _check_chunks(buffer.sample_sequences(64, 3, generator=torch.Generator().manual_seed(0)),
                  episodes, [(0, 0), (1, 0), (2, 0)], 3)
    assert buffer.state_dict()["truncated"].tolist() == [t in (4, 8) for t in range(15)]  # marked as cut


def test_dtypes_are_kept_and_chunks_have_their_shapes():
    buffer = EpisodeBuffer(FRAME, 2, capacity=50, obs_dtype=torch.uint8, dtype=torch.float64)
    _fill(buffer, _record([6, 9], np.random.default_rng(5)))
    batch = buffer.sample_sequences(3, 7, generator=torch.Generator().manual_seed(0))
    assert batch.obs.shape == batch.next_obs.shape == (3, 7, *FRAME)
    assert batch.action.shape == (3, 7, 2)
    assert batch.reward.shape == batch.terminated.shape == batch.mask.shape == (3, 7)
    assert batch.obs.dtype == batch.next_obs.dtype == torch.uint8
    assert batch.action.dtype == batch.reward.dtype == torch.float64
    assert batch.terminated.dtype == batch.mask.dtype == torch.bool
    assert len(batch) == 3


# ---------------------------------------------------------------------- single transitions
def test_transitions_match_the_flat_list_and_serve_a_transition_model():
    obs_dim = 3
    episodes = _record([5, 2, 8, -3], np.random.default_rng(6), obs_shape=(obs_dim,), act_dim=1)
    episodes = [[(s[0].astype(np.float32) / 255, s[1], s[2], s[3].astype(np.float32) / 255, *s[4:]) for s in e]
                for e in episodes]  # float states: step t's next_obs is step t + 1's obs
    buffer = EpisodeBuffer(obs_dim, 1, capacity=15, max_episodes=10)  # the 5-step episode is evicted
    _fill(buffer, episodes)
    flat = [step for steps in episodes[1:] for step in steps]  # the oracle: transitions oldest first
    assert len(buffer) == len(flat) == 13 and buffer.obs_dim == obs_dim
    everything = buffer.all()
    assert isinstance(everything, Batch) and everything.obs.shape == (13, obs_dim)
    for j, name in enumerate(("obs", "action", "reward", "next_obs", "terminated")):
        expected = np.stack([np.asarray(step[j]) for step in flat])
        np.testing.assert_allclose(getattr(everything, name).numpy(), expected, rtol=1e-6)
    indices = torch.tensor([[0, 12, 1], [4, 4, 9]])
    two = buffer.batch(indices)
    assert two.obs.shape == (2, 3, obs_dim) and torch.equal(two.next_obs[1, 2], everything.next_obs[9])
    drawn = buffer.sample(50, generator=torch.Generator().manual_seed(0))
    rows = {tuple(row) for row in everything.obs.tolist()}
    assert drawn.obs.shape == (50, obs_dim) and {tuple(row) for row in drawn.obs.tolist()} <= rows
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, 13\)"):
        buffer.batch(torch.tensor([13]))
    # D_real of a transition model: fit_model uses split, bootstrap and batch
    from mbrl_course.models import GaussianEnsemble, fit_model

    model = GaussianEnsemble(obs_dim, 1, ensemble_size=2, hidden_size=8, num_layers=2, num_elites=1)
    report = fit_model(model, buffer, epochs=2, batch_size=4, generator=torch.Generator().manual_seed(0))
    assert report.epochs_run == 2 and np.isfinite(report.train_loss).all()
    assert report.val_indices.max() < len(buffer)


# ---------------------------------------------------------------------- memory, checkpoints, device
def test_100k_frames_of_64x64x3_uint8_fit_in_1_3_gb():
    capacity, act_dim = 100_000, 6
    buffer = EpisodeBuffer((64, 64, 3), act_dim, capacity=capacity, obs_dtype=torch.uint8)
    frame = 64 * 64 * 3  # bytes of one uint8 frame
    # the real storage tensors (allocated with torch.empty, so untouched pages cost no memory here)
    storage = [*buffer._steps.values(), buffer._last_next_obs]
    assert buffer.nbytes == sum(t.numel() * t.element_size() for t in storage)
    assert buffer._steps["obs"].dtype == torch.uint8 and buffer._steps["obs"].shape == (capacity, 64, 64, 3)
    per_step = frame + 4 * act_dim + 4 + 1 + 1  # obs once, action, reward, two flags: no next_obs
    assert buffer.nbytes == capacity * per_step + buffer.max_episodes * frame
    assert buffer.nbytes <= 1.3e9, f"{buffer.nbytes / 1e9:.3f} GB"
    episodes = _record([3], np.random.default_rng(7), obs_shape=(64, 64, 3), act_dim=act_dim)
    _fill(buffer, episodes)
    assert buffer.sample_sequences(2, 3).obs.dtype == torch.uint8


def test_state_dict_round_trip_samples_the_same_and_evicts_the_same():
    rng = np.random.default_rng(8)
    episodes = _record([6, 3, 9, 2, 7, 4, 8], rng, cut={2})
    buffer = EpisodeBuffer(FRAME, 2, capacity=20, max_episodes=5, obs_dtype=torch.uint8)
    _fill(buffer, [*episodes[:4], episodes[4][:3]])  # saved while episode 4 runs
    stream = io.BytesIO()
    torch.save(buffer.state_dict(), stream)
    stream.seek(0)
    restored = EpisodeBuffer(FRAME, 2, capacity=20, max_episodes=5, obs_dtype=torch.uint8)
    restored.load_state_dict(torch.load(stream))
    assert (len(restored), restored.episodes) == (len(buffer), buffer.episodes)

    def same(a, b):
        x = a.sample_sequences(16, 5, generator=torch.Generator().manual_seed(11))
        y = b.sample_sequences(16, 5, generator=torch.Generator().manual_seed(11))
        assert all(torch.equal(getattr(x, f), getattr(y, f)) for f in vars(x))
        assert all(torch.equal(u, v) for u, v in zip(vars(a.sample(9, torch.Generator().manual_seed(2))).values(),
                                                     vars(b.sample(9, torch.Generator().manual_seed(2))).values()))

    same(buffer, restored)
    rest = [episodes[4][3:], *episodes[5:]]  # both go on with episode 4 and evict the same episodes
    _fill(buffer, rest)
    _fill(restored, rest)
    same(buffer, restored)
    _check_chunks(restored.sample_sequences(32, 5), episodes, _stored(episodes, 20, 5), 5)
    small = EpisodeBuffer(FRAME, 2, capacity=12, max_episodes=5, obs_dtype=torch.uint8)
    small.load_state_dict(buffer.state_dict())  # keeps the newest whole episodes that fit
    assert small.episodes == len(_stored(episodes, 12, 5)) == 2
    _check_chunks(small.sample_sequences(32, 5), episodes, _stored(episodes, 12, 5), 5)
    with pytest.raises(ValueError, match=r"state_dict: holds obs_shape=\(4, 5, 3\)"):
        EpisodeBuffer((4, 5), 2).load_state_dict(buffer.state_dict())


def test_chunks_go_to_the_requested_device():
    buffer = EpisodeBuffer(FRAME, 2, capacity=30, obs_dtype=torch.uint8, device="cpu")
    _fill(buffer, _record([5, 8], np.random.default_rng(9)))
    assert buffer.sample_sequences(2, 3).obs.device == torch.device("cpu")
    batch = buffer.sample_sequences(2, 3, device="meta")  # a device without data: only where it went
    assert all(t.device == torch.device("meta") for t in vars(batch).values())
    assert batch.obs.dtype == torch.uint8
    with pytest.raises(ValueError, match="device"):
        buffer.sample_sequences(2, 3, device="nowhere")


@pytest.mark.gpu
def test_a_buffer_on_the_gpu_samples_the_same_as_on_the_cpu():
    episodes = _record([5, 8, 3], np.random.default_rng(10))
    cpu = EpisodeBuffer(FRAME, 2, capacity=30, obs_dtype=torch.uint8)
    gpu = EpisodeBuffer(FRAME, 2, capacity=30, obs_dtype=torch.uint8, device="cuda")
    _fill(cpu, episodes)
    _fill(gpu, episodes)
    x = cpu.sample_sequences(8, 4, generator=torch.Generator().manual_seed(0))
    y = gpu.sample_sequences(8, 4, generator=torch.Generator().manual_seed(0), device="cpu")
    assert gpu.sample_sequences(8, 4).obs.is_cuda
    assert all(torch.equal(getattr(x, f), getattr(y, f)) for f in vars(x))


# ---------------------------------------------------------------------- errors
def test_errors_name_the_argument():
    buffer = EpisodeBuffer(FRAME, 2, capacity=10, obs_dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"buffer: needs at least 1 transition\(s\), holds 0"):
        buffer.sample_sequences(4, 3)
    _fill(buffer, _record([4], np.random.default_rng(11)))
    with pytest.raises(ValueError, match="length: expected an integer >= 1, got 0"):
        buffer.sample_sequences(4, 0)
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, got 0"):
        buffer.sample_sequences(0, 3)
    good = dict(obs=np.zeros(FRAME, np.uint8), action=np.zeros(2), reward=0.0,
                next_obs=np.zeros(FRAME, np.uint8), terminated=False)
    for name, value, message in [
        ("obs", np.zeros((4, 5)), r"obs: expected shape \(4, 5, 3\), got \(4, 5\)"),
        ("next_obs", np.full(FRAME, 256), r"next_obs: expected values in \[0, 255\] for torch.uint8 storage"),
        ("obs", np.full(FRAME, 0.5), "obs: expected whole numbers for torch.uint8 storage"),
        ("action", np.zeros(3), r"action: expected shape \(2,\), got \(3,\)"),
        ("reward", np.nan, "reward: expected finite values"),
    ]:
        with pytest.raises(ValueError, match=message):
            buffer.add(**{**good, name: value})
    assert len(buffer) == 4 and buffer.episodes == 1  # a refused step changes nothing
    with pytest.raises(ValueError, match="capacity"):
        EpisodeBuffer(FRAME, 2, capacity=0)
    with pytest.raises(ValueError, match=r"obs_shape\[1\]: expected an integer >= 1, got 0"):
        EpisodeBuffer((4, 0), 2)
    with pytest.raises(TypeError, match="obs_dtype"):
        EpisodeBuffer(FRAME, 2, obs_dtype=torch.bool)
