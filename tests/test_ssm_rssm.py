"""Recurrent SSMs (issue 14): RSSM, VRNN and their ablations against independent oracles.

- with the stochastic part off, RSSM and VRNN are plain GRU rollouts (rebuilt here from torch.nn.GRUCell);
- with the recurrence off, the model's ELBO is issue 13's ``elbo_terms`` on the same weights and samples;
- the analytic KL is torch.distributions'; free nats clamp; one-step overshooting is the plain KL;
- imagine is differentiable and batched; observe_step repeated is observe; bad input is refused;
- a tiny training run on pixel pendulum frames lowers the loss, and a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as nnf
from torch import nn

from mbrl_course.ssm.conv import ConvDecoder, ConvEncoder, postprocess_frames, preprocess_frames
from mbrl_course.ssm.elbo import elbo_terms
from mbrl_course.ssm.generative import GaussianEmission, GenerativeModel, InitialState, check_sequences
from mbrl_course.ssm.pixel_data import collect_pixel_sequences
from mbrl_course.ssm.posteriors import PosteriorSample
from mbrl_course.ssm.rssm import (
    RSSM,
    LatentState,
    StochasticSSM,
    WorldModelTrainConfig,
    gaussian_kl,
    make_world_model,
    open_loop_prediction,
    train_world_model,
)

B, T, DY, DU, S, H, HID = 3, 6, 4, 2, 3, 5, 8


def _vector_model(kind, **kw):
    torch.manual_seed(0)
    return make_world_model(kind, obs_dim=DY, action_dim=DU, stochastic_size=S, deterministic_size=H,
                            hidden_size=HID, embed_size=6, **kw).double()


def _vector_data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(B, T, DY, generator=g, dtype=torch.float64)
    u = torch.randn(B, T, DU, generator=g, dtype=torch.float64)
    r = torch.randn(B, T, generator=g, dtype=torch.float64)
    return y, u, r


@pytest.fixture(scope="module")
def pendulum() -> object:
    return collect_pixel_sequences("Pendulum-v1", 16, 8, seed=0)


def _gru_rollout(model, y, u, horizon_actions, observation_input: bool):
    """The deterministic RNN written out with a fresh GRUCell carrying the model's weights.

    x_t = ELU(W [s_{t-1}, a_{t-1} (, φ(y_{t-1}))] + b), h_t = GRU(x_t, h_{t-1}),
    s_t = μ_q([h_t, φ(y_t)]) while filtering, s_t = μ_p(h_t) in open loop (μ: the first S outputs of the heads).
    """
    cell = nn.GRUCell(model.transition_in.out_features, H).double()
    cell.load_state_dict(model.cell.state_dict())
    W, b = model.transition_in.weight, model.transition_in.bias
    h = torch.zeros(B, H, dtype=torch.float64)
    s = torch.zeros(B, S, dtype=torch.float64)
    e_prev = torch.zeros(B, model.embed_size, dtype=torch.float64)
    e = model.encoder(y)
    hs, ss, prior_means = [], [], []
    for t in range(T):
        inp = [s, u[:, t]] + ([e_prev] if observation_input else [])
        h = cell(nnf.elu(nnf.linear(torch.cat(inp, -1), W, b)), h)
        prior_means.append(model.prior_net(h)[:, :S])
        s = model.posterior_net(torch.cat([h, e[:, t]], -1))[:, :S]
        e_prev = e[:, t]
        hs.append(h)
        ss.append(s)
    imagined = []
    for k in range(horizon_actions.shape[1]):
        inp = [s, horizon_actions[:, k]] + ([e_prev] if observation_input else [])
        h = cell(nnf.elu(nnf.linear(torch.cat(inp, -1), W, b)), h)
        s = model.prior_net(h)[:, :S]
        if observation_input:  # the VRNN reads φ of its own prediction
            e_prev = model.encoder(model.decoder(torch.cat([h, s], -1)))
        imagined.append(torch.cat([h, s], -1))
    return torch.stack(hs, 1), torch.stack(ss, 1), torch.stack(prior_means, 1), torch.stack(imagined, 1)


@pytest.mark.parametrize("kind,observation_input", [("rssm", False), ("vrnn", True)])
def test_deterministic_switch_is_a_plain_gru(kind, observation_input):
    model = _vector_model(kind, stochastic=False)
    y, u, _ = _vector_data()
    future = torch.randn(B, 4, DU, dtype=torch.float64)
    post, prior = model.observe(y, u)
    h, s, prior_mean, imagined = _gru_rollout(model, y, u, future, observation_input)
    torch.testing.assert_close(post.h, h, rtol=0, atol=1e-12)
    torch.testing.assert_close(post.s, s, rtol=0, atol=1e-12)
    torch.testing.assert_close(prior.s, prior_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(model.decode(post.features), model.decoder(torch.cat([h, s], -1)), rtol=0, atol=1e-12)
    out = model.imagine(post[:, -1], actions=future)
    torch.testing.assert_close(out.states.features, imagined, rtol=0, atol=1e-12)
    # its "KL" is the unit-variance limit ½ |μ_q − μ_p|² and free nats do not apply
    loss = model.loss(y, u, None, free_nats=100.0)
    torch.testing.assert_close(loss.kl, 0.5 * (s - prior_mean).square().sum(-1), rtol=0, atol=1e-12)
    torch.testing.assert_close(loss.loss, -loss.reconstruction.mean() + loss.kl.mean(), rtol=0, atol=1e-12)


class _PriorAsTransition(nn.Module):
    """Issue 13's transition interface, (s_{t-1}, u_t) -> (mean, L), around the SSM's prior network."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model, self.state_dim, self.control_dim = model, S, DU

    def forward(self, previous_state, control=None):
        control = control.expand(previous_state.shape[:-1] + control.shape[-1:])
        x = nnf.elu(self.model.transition_in(torch.cat([previous_state, control], -1)))
        raw = self.model.prior_net(x)
        std = nnf.softplus(raw[..., S:]) + self.model.min_std
        return raw[..., :S], torch.diag_embed(std)


def test_no_recurrence_is_issue13_markovian_ssm_elbo():
    model = _vector_model("ssm", reward_head=False)
    assert model.deterministic_size == 0 and model.cell is None
    y, u, _ = _vector_data()
    out = model.loss(y, u, None, free_nats=0.0, generator=torch.Generator().manual_seed(3))
    post = out.posterior
    # s_0 = 0 deterministically: q(s_0) = p(s_0) = N(0, I), so issue 13's KL at t = 0 is exactly 0
    zeros = torch.zeros(B, 1, S, dtype=torch.float64)
    eye = torch.eye(S, dtype=torch.float64).expand(B, 1, S, S)
    sample = PosteriorSample(torch.cat([zeros, post.s], 1)[None], torch.cat([zeros, post.mean], 1)[None],
                             torch.cat([eye, torch.diag_embed(post.std)], 1)[None])
    emission = GaussianEmission(S, DY, "mlp", emission_cov=1.0).double()
    emission.net = model.decoder  # p(y_t | s_t) = N(dec(s_t), I)
    generative = GenerativeModel(InitialState(S).double(), _PriorAsTransition(model), emission)
    seq = check_sequences(y, None, u, DY, DU)
    reference = elbo_terms(generative, sample, seq, kl="analytic")
    torch.testing.assert_close(out.elbo, reference.value, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.kl, reference.kl[0, :, 1:], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.reconstruction, reference.reconstruction[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(out.loss, -reference.value.sum() / (B * T), rtol=0, atol=1e-6)


def test_analytic_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mq, mp = torch.randn(2, 7, S, generator=g), torch.randn(2, 7, S, generator=g)
    sq, sp = torch.rand(2, 7, S, generator=g) + 0.1, torch.rand(2, 7, S, generator=g) + 0.1
    D = torch.distributions
    expected = D.kl_divergence(D.Independent(D.Normal(mq, sq), 1), D.Independent(D.Normal(mp, sp), 1))
    torch.testing.assert_close(gaussian_kl(mq, sq, mp, sp), expected, rtol=1e-5, atol=1e-6)


def test_free_nats_clamp_each_step():
    model = _vector_model("rssm")
    y, u, r = _vector_data()
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    plain = model.loss(y, u, r, free_nats=0.0, generator=gen())
    free = float(plain.kl.detach().median())  # some steps below, some above
    clamped = model.loss(y, u, r, free_nats=free, generator=gen())
    ll = -(plain.reconstruction.mean() + plain.reward.mean())
    torch.testing.assert_close(plain.loss, ll + plain.kl.mean())
    torch.testing.assert_close(clamped.loss, ll + torch.where(plain.kl > free, plain.kl, free).mean())
    # a KL under the free nats gets no gradient: with a huge clamp the prior net learns nothing
    model.zero_grad()
    model.loss(y, u, r, free_nats=1e6, generator=gen()).loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.prior_net.parameters())


def test_overshooting_distance_one_is_the_plain_kl_and_stops_posterior_gradients():
    model = _vector_model("rssm")
    y, u, r = _vector_data()
    out = model.loss(y, u, r, free_nats=0.0, generator=torch.Generator().manual_seed(2))
    kls, valid = model.overshooting_kl(out.posterior, u, 1)
    assert kls.shape == (1, B, T) and bool(valid.all())
    torch.testing.assert_close(kls[0], out.kl, rtol=0, atol=1e-12)
    one = model.loss(y, u, r, free_nats=0.0, overshooting_distance=1, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(one.loss, out.loss, rtol=0, atol=1e-12)
    # d = 2: defined from t = 1 on, and q(s_t | ·) is a fixed target: no gradient reaches its (μ, σ), while the
    # samples s_{t-2} the 2-step priors start from (t - 2 ≤ T - 3) do get one; the one-step KL moves q as well
    kls, valid = model.overshooting_kl(out.posterior, u, 2)
    assert valid[1].tolist() == [False] + [True] * (T - 1) and not kls[1, :, 0].any()
    post = out.posterior
    g_mean, g_std, g_s = torch.autograd.grad(kls[1].sum(), [post.mean, post.std, post.s], retain_graph=True)
    assert not g_mean.any() and not g_std.any()
    assert g_s[:, :T - 2].abs().sum(-1).gt(0).all() and not g_s[:, T - 2:].any()
    assert torch.autograd.grad(kls[0].sum(), post.mean)[0].abs().sum(-1).gt(0).all()
    three = model.loss(y, u, r, overshooting_distance=3)
    assert three.overshooting.shape == (3, B, T) and torch.isfinite(three.loss)


def test_imagine_is_differentiable_and_batched():
    model = _vector_model("rssm")
    y, u, _ = _vector_data()
    post, _ = model.observe(y, u)
    policy = nn.Sequential(nn.Linear(model.feature_size, DU), nn.Tanh()).double()
    out = model.imagine(post, policy=policy, horizon=4)  # from every (B, T) posterior state, Dreamer-style
    assert out.states.features.shape == (B, T, 4, H + S) and out.rewards.shape == (B, T, 4)
    assert out.actions.shape == (B, T, 4, DU)
    out.rewards.sum().backward()
    assert policy[0].weight.grad is not None and policy[0].weight.grad.abs().sum() > 0
    # batched = one at a time (following the means: no noise to align)
    actions = torch.randn(B, 5, DU, dtype=torch.float64)
    batch = model.imagine(post[:, -1], actions=actions, sample=False)
    for b in range(B):
        single = model.imagine(post[b:b + 1, -1], actions=actions[b:b + 1], sample=False)
        torch.testing.assert_close(single.states.features[0], batch.states.features[b], rtol=0, atol=1e-12)
        torch.testing.assert_close(single.rewards[0], batch.rewards[b], rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["rssm", "vrnn", "ssm"])
def test_observe_step_repeated_equals_observe(kind):
    torch.manual_seed(0)
    model = make_world_model(kind, obs_dim=DY, action_dim=DU, stochastic_size=S, deterministic_size=H,
                             hidden_size=HID).double()
    y, u, _ = _vector_data()
    post, prior = model.observe(y, u, generator=torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    state = model.initial_state(B)
    for t in range(T):
        state, p = model.observe_step(state, u[:, t], y[:, t], generator=g)
        torch.testing.assert_close(state.features, post[:, t].features, rtol=0, atol=1e-12)
        torch.testing.assert_close(p.mean, prior[:, t].mean, rtol=0, atol=1e-12)


def test_frames_conversions_and_conv_shapes():
    frames = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    x = preprocess_frames(frames)
    assert x.shape == (2, 3, 3, 64, 64) and x.min() >= -0.5 and x.max() <= 0.5
    assert torch.equal(postprocess_frames(x), frames)
    enc, dec = ConvEncoder(depth=4), ConvDecoder(10, depth=4)
    assert enc(frames).shape == (2, 3, 128)
    assert dec(torch.zeros(2, 3, 10)).shape == (2, 3, 3, 64, 64)


def test_bad_input_is_refused():
    model = RSSM(action_dim=1, depth=2, deterministic_size=4, stochastic_size=2, hidden_size=8)
    actions = torch.zeros(2, 4, 1)
    with pytest.raises(ValueError, match=r"frames: expected shape \(\.\.\., 64, 64, 3\)"):
        model.observe(torch.zeros(2, 4, 32, 32, 3, dtype=torch.uint8), actions)
    with pytest.raises(TypeError, match="frames: expected dtype torch.uint8"):
        model.observe(torch.zeros(2, 4, 64, 64, 3, dtype=torch.int64), actions)
    with pytest.raises(ValueError, match="channels first"):
        model.observe(torch.zeros(2, 4, 64, 64, 3), actions)  # floats, channels last
    with pytest.raises(TypeError, match="frames: expected dtype torch.uint8"):
        preprocess_frames(torch.zeros(64, 64, 3, dtype=torch.float64))
    frames = torch.zeros(2, 4, 64, 64, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"actions: expected shape \(2, 4, 1\)"):
        model.observe(frames, torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="overshooting_distance: expected at most the sequence length T = 4"):
        model.loss(frames, actions, None, overshooting_distance=5)
    with pytest.raises(ValueError, match="kind"):
        make_world_model("lstm")
    with pytest.raises(ValueError, match="exactly one of actions and policy"):
        model.imagine(model.initial_state(2), horizon=3)


def test_tiny_training_on_pixel_pendulum_lowers_the_loss(pendulum, tmp_path):
    assert pendulum.frames.shape == (16, 8, 64, 64, 3) and pendulum.frames.dtype == torch.uint8
    again = collect_pixel_sequences("Pendulum-v1", 2, 8, seed=0)
    assert torch.equal(again.frames, pendulum.frames[:2])  # seeded
    kw = dict(action_dim=1, depth=4, deterministic_size=16, stochastic_size=4, hidden_size=32)
    cfg = WorldModelTrainConfig(num_steps=12, batch_size=8, chunk_length=8, learning_rate=3e-3, progress=False)
    torch.manual_seed(0)
    model = make_world_model("rssm", **kw)
    result = train_world_model(model, pendulum.frames, pendulum.actions, pendulum.rewards, cfg)
    assert len(result.history) == 12
    # the loss without log p's constant ½ log 2π per pixel (64·64·3 of them): the squared error and the KL
    excess = [v - 0.5 * 64 * 64 * 3 * math.log(2 * math.pi) for v in result.history]
    assert sum(excess[-3:]) / 3 < 0.7 * excess[0], excess
    pred, rewards = open_loop_prediction(model, pendulum.frames[:2], pendulum.actions[:2], context=5, horizon=3)
    assert pred.shape == (2, 3, 3, 64, 64) and rewards.shape == (2, 3)
    # resume: 4 steps, then on to 6 from the checkpoint, equals 6 steps in one go
    short = WorldModelTrainConfig(num_steps=4, batch_size=2, chunk_length=4, progress=False)
    straight = WorldModelTrainConfig(num_steps=6, batch_size=2, chunk_length=4, progress=False)
    models = []
    for configs in ([straight], [short, straight]):
        torch.manual_seed(1)
        m = make_world_model("vrnn", **kw)
        path = tmp_path / f"ckpt{len(configs)}.pt"
        for c in configs:
            res = train_world_model(m, pendulum.frames, pendulum.actions, pendulum.rewards, c, checkpoint_path=path)
        models.append((m, res))
    (a, ra), (b, rb) = models
    assert rb.resumed_from == 4 and ra.resumed_from == 0
    assert ra.history == rb.history
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_make_world_model_kinds():
    kw = dict(obs_dim=DY, action_dim=DU, stochastic_size=S, deterministic_size=H, hidden_size=HID)
    rnn, ssm, vrnn, rssm = (make_world_model(k, **kw) for k in ("rnn", "ssm", "vrnn", "rssm"))
    assert isinstance(rnn, RSSM) and not rnn.stochastic and rssm.stochastic
    assert ssm.deterministic_size == 0 and vrnn.observation_input and not rssm.observation_input
    with pytest.raises(ValueError, match="deterministic_size: this model has deterministic_size = 0"):
        StochasticSSM(**kw)
    with pytest.raises(ValueError, match="initial_state: the VRNN"):
        post, prior = vrnn.observe(torch.randn(2, 3, DY), torch.randn(2, 3, DU))
        vrnn.imagine(prior[:, -1], actions=torch.zeros(2, 2, DU))


def test_latent_state_indexing_and_stacking():
    st = LatentState(torch.zeros(2, 5, 3), torch.ones(2, 5, 4), torch.ones(2, 5, 4), torch.ones(2, 5, 4))
    assert st.features.shape == (2, 5, 7) and st[:, 1].features.shape == (2, 7)
    assert LatentState.stack([st[:, 0], st[:, 1]]).h.shape == (2, 2, 3)


@pytest.mark.gpu
def test_cuda_observe_imagine_and_a_training_step(pendulum):
    torch.manual_seed(0)
    model = make_world_model("rssm", action_dim=1, depth=4, deterministic_size=16, stochastic_size=4,
                             hidden_size=32).cuda()
    frames, actions = pendulum.frames[:4].cuda(), pendulum.actions[:4].cuda()
    post, prior = model.observe(frames, actions)
    assert post.features.is_cuda and prior.mean.is_cuda
    out = model.imagine(post[:, -1], actions=actions[:, :3])
    assert out.rewards.is_cuda and out.states.features.shape == (4, 3, 20)
    cfg = WorldModelTrainConfig(num_steps=2, batch_size=4, chunk_length=8, progress=False)
    result = train_world_model(model, pendulum.frames, pendulum.actions, pendulum.rewards, cfg, device="cuda")
    assert len(result.history) == 2 and all(torch.isfinite(torch.tensor(result.history)))


@pytest.mark.parametrize("distance", [0, 3])
def test_a_padding_mask_averages_over_the_real_steps_only(distance):
    """With the last steps of every sequence masked out, the loss (latent overshooting included) is the loss of the
    real prefix alone; a deterministic model, so that both runs see the same states."""
    torch.manual_seed(0)
    model = make_world_model("rssm", obs_dim=DY, action_dim=DU, stochastic_size=S, deterministic_size=H,
                             hidden_size=16, embed_size=8, stochastic=False).double()
    B, T, real = 3, 9, 6
    frames, actions, rewards = (torch.randn(B, T, DY, dtype=torch.float64), torch.randn(B, T, DU, dtype=torch.float64),
                                torch.randn(B, T, dtype=torch.float64))
    mask = torch.arange(T).expand(B, T) < real
    masked = model.loss(frames, actions, rewards, overshooting_distance=distance, mask=mask).loss
    prefix = model.loss(frames[:, :real], actions[:, :real], rewards[:, :real], overshooting_distance=distance).loss
    torch.testing.assert_close(masked, prefix)
    with pytest.raises(ValueError, match="mask: expected shape"):
        model.loss(frames, actions, rewards, mask=mask[:, :real])
