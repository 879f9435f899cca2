"""GTM-SM and its generated world.

Oracles: brute-force nearest neighbours (torch.cdist + sort), direct numpy indexing of the world's pixels,
the closed form of p(s_t | A_{1:t}) (mean Δt Σ a_k, variance t σ_s²) against Monte Carlo, torch.distributions'
KL and log-density, dead reckoning for the rebuilt map, and an uninterrupted run for a resumed one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from mbrl_course.ssm.gtmsm import GTMSM, GTMSMConfig, GTMSMTrainConfig, knn_memory, train_gtmsm
from mbrl_course.ssm.worlds import crop, explore, home_boxes, make_world, revisit_trajectories

F64 = torch.float64
TINY = GTMSMConfig(latent_dim=6, num_neighbours=3, hidden=16, channels=4)


@pytest.fixture(scope="module")
def world():
    return make_world(3, size=96, num_worlds=4)


@pytest.fixture(scope="module")
def trajectories(world):
    return explore(world, 20, torch.Generator().manual_seed(0), trajectories_per_world=2)


# ------------------------------------------------------------------------------------------- the world
def test_world_is_seeded_per_world_and_uint8():
    a, b = make_world(7, size=64, num_worlds=3), make_world(7, size=64, num_worlds=2)
    assert a.image.dtype == torch.uint8 and a.image.shape == (3, 3, 64, 64)
    assert torch.equal(a.image[:2], b.image)                       # world i does not depend on how many are made
    assert not torch.equal(a.image[0], a.image[1])
    assert not torch.equal(make_world(8, size=64).image[0], a.image[0])
    assert a.image.float().std() > 20                              # not a flat image


def test_crop_matches_numpy_indexing(world):
    gen = torch.Generator().manual_seed(1)
    positions = world.low + torch.rand(4, 5, 2, generator=gen) * (world.high - world.low)
    positions[0, 0] = torch.tensor([world.low, world.high])       # the corners of the free range
    index = torch.tensor([3, 0, 2, 1])
    got = crop(world, positions, index)
    image = world.image.numpy()
    for b in range(4):
        for t in range(5):
            x, y = (int(np.rint(v)) for v in positions[b, t].numpy())
            want = image[int(index[b]), :, y - 16:y + 16, x - 16:x + 16]
            np.testing.assert_array_equal(got[b, t].numpy(), want)


def test_explore_actions_positions_and_frames_agree(world, trajectories):
    tr = trajectories
    assert tr.positions.shape == (8, 21, 2) and tr.actions.shape == (8, 20, 2)
    assert tr.frames.shape == (8, 20, 3, 32, 32) and tr.frames.dtype == torch.uint8
    torch.testing.assert_close(tr.positions[:, 1:], tr.positions[:, :1] + torch.cumsum(tr.actions, 1))
    assert float(tr.actions.abs().max()) <= 3.0 + 1e-5
    assert bool((tr.positions >= world.low).all()) and bool((tr.positions <= world.high).all())
    assert torch.equal(tr.world_index, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    image = world.image.numpy()
    for b, t in [(0, 0), (3, 7), (7, 19)]:
        x, y = (int(np.rint(v)) for v in tr.positions[b, t + 1].numpy())
        np.testing.assert_array_equal(tr.frames[b, t].numpy(), image[b // 2, :, y - 16:y + 16, x - 16:x + 16])
    again = explore(world, 20, torch.Generator().manual_seed(0), trajectories_per_world=2)
    assert torch.equal(again.frames, tr.frames) and torch.equal(again.positions, tr.positions)


def test_explore_stays_in_its_box_and_revisits_come_home(world):
    gen = torch.Generator().manual_seed(2)
    home, away = home_boxes(world, 4, gen, home_size=20.0)
    tr = explore(world, 60, gen, boxes=home[:, None].expand(-1, 60, -1))
    assert bool((tr.positions >= home[:, None, :2] - 1e-4).all()) and bool((tr.positions <= home[:, None, 2:] + 1e-4).all())
    assert bool(((home[:, :2] - away[:, :2]).abs() > 20).all())     # the away box is in the other corner
    rv = revisit_trajectories(world, 30, 100, 60, torch.Generator().manual_seed(3), home_size=20.0)
    assert rv.frames.shape[1] == 190
    context, back = rv.positions[:, 1:31], rv.positions[:, -20:]
    assert float(torch.cdist(back, context).min(-1).values.median()) < 6.0   # back among the context's places
    middle = rv.positions[:, 80:131]
    assert float(torch.cdist(middle, context).min(-1).values.min()) > 10.0   # away means away


# ------------------------------------------------------------------------------------------- the memory
def test_knn_memory_matches_brute_force():
    gen = torch.Generator().manual_seed(4)
    keys, values = torch.randn(2, 3, 20, 2, generator=gen, dtype=F64), torch.randn(2, 3, 20, 5, generator=gen, dtype=F64)
    queries = torch.randn(2, 3, 7, 2, generator=gen, dtype=F64)
    m = knn_memory(keys, values, queries, 4)
    dist = torch.cdist(queries, keys)
    sorted_d, order = dist.sort(-1)
    assert torch.equal(m.index, order[..., :4])
    torch.testing.assert_close(m.distances, sorted_d[..., :4])
    for n in range(2):
        for b in range(3):
            for t in range(7):
                for k in range(4):
                    j = int(order[n, b, t, k])
                    assert torch.equal(m.keys[n, b, t, k], keys[n, b, j])
                    assert torch.equal(m.values[n, b, t, k], values[n, b, j])


def test_knn_memory_gradient_is_finite_at_zero_distance():
    keys = torch.randn(1, 5, 2, dtype=F64)
    queries = keys[:, :2].clone().requires_grad_(True)             # queries exactly on two keys
    values = torch.randn(1, 5, 3, dtype=F64, requires_grad=True)
    m = knn_memory(keys, values, queries, 2)
    (m.distances.sum() + m.values.sum()).backward()
    assert torch.isfinite(queries.grad).all() and torch.isfinite(values.grad).all()


def test_knn_memory_refuses_empty_memory_and_too_many_neighbours():
    with pytest.raises(ValueError, match=r"keys: the memory is empty \(τ = 0"):
        knn_memory(torch.zeros(2, 0, 2), torch.zeros(2, 0, 4), torch.zeros(2, 3, 2), 1)
    with pytest.raises(ValueError, match="num_neighbours: expected K <= τ = 3"):
        knn_memory(torch.zeros(2, 3, 2), torch.zeros(2, 3, 4), torch.zeros(2, 3, 2), 4)
    with pytest.raises(ValueError, match="values: expected shape"):
        knn_memory(torch.zeros(2, 3, 2), torch.zeros(2, 4, 4), torch.zeros(2, 3, 2), 1)


# ------------------------------------------------------------------------------------------- the model
def test_state_sampling_matches_the_closed_form():
    """p(s_t | A_{1:t}) = N(Δt Σ_{k≤t} a_k, t σ_s² I): Monte Carlo mean and variance within 5 standard errors."""
    model = GTMSM(GTMSMConfig(step_size=0.3, state_noise=0.2)).double()
    actions = torch.randn(2, 6, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    N = 20000
    s = model.sample_states(actions, torch.Generator().manual_seed(6), num_samples=N)      # (N, 2, 6, 2)
    mean = model.step_size * torch.cumsum(actions, 1)
    var = torch.arange(1, 7, dtype=F64)[None, :, None] * model.state_noise ** 2
    assert bool(((s.mean(0) - mean).abs() <= 5 * (var / N).sqrt()).all())
    assert bool(((s.var(0) - var).abs() <= 5 * var * (2 / N) ** 0.5).all())


def _batch(trajectories, tau=8):
    x, a = trajectories.frames, trajectories.actions
    return x[:, :tau], a[:, :tau], x[:, tau:], a[:, tau:]


def test_memory_prior_with_one_neighbour_recalls_its_embedding():
    """K = 1 and no learned correction: the mean of p(z_t | s_t, M) is ẑ of the nearest context item (brute force)."""
    model = GTMSM(GTMSMConfig(latent_dim=5, num_neighbours=1, hidden=8, channels=4)).double()
    with torch.no_grad():
        model.prior.head.weight.zero_()
        model.prior.head.bias.zero_()
    gen = torch.Generator().manual_seed(9)
    keys, values = torch.randn(3, 12, 2, generator=gen, dtype=F64), torch.randn(3, 12, 5, generator=gen, dtype=F64)
    queries = torch.randn(3, 4, 2, generator=gen, dtype=F64)
    mean, scale = model.state_prior(queries, keys, values)
    nearest = ((queries[:, :, None] - keys[:, None]) ** 2).sum(-1).argmin(-1)          # (3, 4)
    torch.testing.assert_close(mean, values[torch.arange(3)[:, None], nearest])
    assert scale.shape == (3, 4, 5, 5)


@pytest.mark.parametrize("memory", [True, False])
def test_elbo_terms_match_torch_distributions(trajectories, memory):
    torch.manual_seed(0)
    model = GTMSM(GTMSMConfig(latent_dim=6, num_neighbours=3, hidden=16, channels=4, memory=memory))
    terms = model.elbo(*_batch(trajectories), torch.Generator().manual_seed(0))
    assert terms.kl.shape == terms.reconstruction.shape == (8, 12) and terms.states.shape == (8, 20, 2)
    q = Independent(Normal(terms.posterior_mean, terms.posterior_std), 1)
    p = Independent(Normal(terms.prior_mean, terms.prior_std), 1)
    torch.testing.assert_close(terms.kl, kl_divergence(q, p), rtol=1e-4, atol=1e-4)
    x = trajectories.frames[:, 8:].float() / 255.0
    z = terms.posterior_mean
    want = Normal(model.decoder(z), model.decoder.pixel_std).log_prob(x).sum((-3, -2, -1))
    torch.testing.assert_close(model.decoder.log_prob(x, z), want, rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize("memory", [True, False])
def test_gradient_reaches_every_parameter(trajectories, memory):
    torch.manual_seed(1)
    model = GTMSM(GTMSMConfig(latent_dim=6, num_neighbours=3, hidden=16, channels=4, memory=memory))
    model.elbo(*_batch(trajectories), torch.Generator().manual_seed(1)).value.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_memory_map_positions_are_dead_reckoning(trajectories):
    model = GTMSM(GTMSMConfig(latent_dim=6, num_neighbours=3, hidden=16, channels=4, state_noise=1e-6))
    xc, ac, _, af = _batch(trajectories)
    positions, crops = model.memory_map(xc, ac)
    torch.testing.assert_close(positions, torch.cumsum(ac, 1), atol=1e-3, rtol=1e-4)
    assert crops.shape == (8, 8, 3, 32, 32)
    pred = model.predict(xc, ac, af)
    assert pred.shape == (8, 12, 3, 32, 32) and bool((pred >= 0).all()) and bool((pred <= 1).all())


def test_bad_input_gets_clear_errors(trajectories):
    model = GTMSM(TINY)
    xc, ac, xt, at = _batch(trajectories)
    with pytest.raises(ValueError, match=r"context_frames: expected shape \(B, T, 3, 32, 32\)"):
        model.elbo(xc[..., :28, :28], ac, xt, at)
    with pytest.raises(ValueError, match=r"target_frames: expected shape \(B, T, 3, 32, 32\)"):
        model.elbo(xc, ac, xt.permute(0, 1, 3, 4, 2), at)
    with pytest.raises(TypeError, match="context_frames: expected dtype torch.uint8"):
        model.elbo(xc.long(), ac, xt, at)
    with pytest.raises(ValueError, match=r"target_frames: expected floating values in \[0, 1\]"):
        model.elbo(xc, ac, xt.float(), at)                          # 0..255 as floats
    with pytest.raises(ValueError, match=r"the memory is empty \(τ = 0"):
        model.elbo(xc[:, :0], ac[:, :0], xt, at)
    with pytest.raises(ValueError, match=r"the memory is empty \(τ = 0"):
        model.predict(xc[:, :0], ac[:, :0], at)
    with pytest.raises(ValueError, match="expected at least K = 3 context steps"):
        model.elbo(xc[:, :2], ac[:, :2], xt, at)
    with pytest.raises(ValueError, match=r"context_actions: expected shape \(8, 8, 2\)"):
        model.elbo(xc, ac[..., :1], xt, at)
    with pytest.raises(TypeError, match="future_actions: expected a floating dtype"):
        model.predict(xc, ac, at.long())
    with pytest.raises(ValueError, match="positions: expected coordinates in"):
        crop(make_world(0, size=64), torch.tensor([[[10.0, 30.0]]]))
    with pytest.raises(ValueError, match="size: expected at least 64"):
        make_world(0, size=48)


# ------------------------------------------------------------------------------------------- training
def _tiny_data():
    world = make_world(11, size=64, num_worlds=16)
    gen = torch.Generator().manual_seed(0)
    home, _ = home_boxes(world, 16, gen, home_size=12.0)
    return explore(world, 16, gen, boxes=home[:, None].expand(-1, 16, -1))


def test_smoke_training_improves_the_elbo():
    data = _tiny_data()
    torch.manual_seed(0)
    model = GTMSM(TINY)
    out = train_gtmsm(model, data.frames, data.actions, 10,
                      GTMSMTrainConfig(num_steps=60, batch_size=8, learning_rate=3e-3, progress=False))
    assert len(out.history) == 60 and out.resumed_from == 0
    assert np.mean(out.history[-10:]) > np.mean(out.history[:10]) + 0.2


def test_training_resumes_from_its_checkpoint(tmp_path):
    data = _tiny_data()
    cfg = GTMSMTrainConfig(num_steps=6, batch_size=4, progress=False, checkpoint_every=2)
    torch.manual_seed(0)
    straight = GTMSM(TINY)
    full = train_gtmsm(straight, data.frames, data.actions, 10, cfg)
    torch.manual_seed(0)
    resumed = GTMSM(TINY)
    path = tmp_path / "gtmsm.pt"
    train_gtmsm(resumed, data.frames, data.actions, 10, GTMSMTrainConfig(**{**cfg.__dict__, "num_steps": 4}),
                checkpoint_path=path)
    again = GTMSM(TINY)
    out = train_gtmsm(again, data.frames, data.actions, 10, cfg, checkpoint_path=path)
    assert out.resumed_from == 4 and out.history == pytest.approx(full.history, rel=1e-5)
    for a, b in zip(straight.parameters(), again.parameters()):
        torch.testing.assert_close(a, b)
