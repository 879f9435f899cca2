"""PILCO's controllers: actions by hand, exact moments against 10^6-sample Monte Carlo, gradients, errors."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from moment_helpers import (
    DTYPE,
    assert_symmetric_psd,
    check_against_samples,
    gaussian_samples,
    random_gaussian,
)

from mbrl_course.models.moment_matching import compose, joint, trig_features
from mbrl_course.rl import LinearController, RBFController
from mbrl_course.rl.controllers import LOG_LENGTHSCALE_BOUNDS


def randomised(controller, seed: int):
    """Parameters far from the small initial ones, so every term of the moments matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if isinstance(controller, RBFController):
            controller.centres.copy_(torch.randn(controller.centres.shape, generator=gen, dtype=DTYPE))
            controller.targets.copy_(torch.randn(controller.targets.shape, generator=gen, dtype=DTYPE))
            scales = 0.6 + torch.rand(controller.log_lengthscales.shape, generator=gen, dtype=DTYPE)
            controller.log_lengthscales.copy_(scales.log())
        else:
            size = controller.weight.shape[1] ** -0.5
            controller.weight.copy_(size * torch.randn(controller.weight.shape, generator=gen, dtype=DTYPE))
            controller.bias.copy_(0.5 * torch.randn(controller.bias.shape, generator=gen, dtype=DTYPE))
    return controller


def make(kind: str, obs_dim: int, act_dim: int, seed: int):
    bound = 0.5 + torch.arange(act_dim, dtype=DTYPE)
    if kind == "rbf":
        return randomised(RBFController(obs_dim, act_dim, bound, num_basis=12), seed)
    return randomised(LinearController(obs_dim, act_dim, bound), seed)


@functools.lru_cache(maxsize=2)
def samples(dim: int):
    """One input Gaussian and its 10^6 samples per input size, shared by both controllers."""
    mean, cov = random_gaussian(dim, seed=30 + dim)
    return mean, cov, gaussian_samples(mean, cov, seed=40 + dim)


def values_and_jacobian(fn, x):
    """y = fn(x) (N, E) and ∂y/∂x (N, D, E) by autograd (each sample is its own input)."""
    x = x.clone().requires_grad_(True)
    y = fn(x)
    rows = [torch.autograd.grad(y[:, e].sum(), x, retain_graph=True)[0] for e in range(y.shape[1])]
    return y.detach(), torch.stack(rows, -1)


def check_moment_matched_chain(first, mean, cov, fn, chained, what, seed):
    """``chained`` = compose(first, moments of fn at y ~ N(first.mean, first.cov)) against Monte Carlo.

    Moment matching at y means [x, y] is the Gaussian ``joint(mean, cov, first)``; then z = fn(y) exactly.
    """
    joint_mean, joint_cov = joint(mean, cov, first)
    assert_symmetric_psd(joint_cov, f"{what}: joint")
    drawn = gaussian_samples(joint_mean.detach(), joint_cov.detach(), seed=seed)
    x, y = drawn[:, :mean.shape[0]], drawn[:, mean.shape[0]:]
    z, jacobian = values_and_jacobian(fn, y)
    gain = torch.einsum("de,nea->nda", first.input_gain.detach(), jacobian)  # C_{x→y} ∂z/∂y at every sample
    with torch.no_grad():
        check_against_samples(chained, x, z, what, gain)


def squashing(controller):
    """ũ ↦ u_max ⊙ sin(ũ), the controller's last map."""
    return lambda u_tilde: controller.action_bound * torch.sin(u_tilde)


@pytest.mark.parametrize(("obs_dim", "act_dim"), [(1, 1), (4, 2)])
def test_linear_moments_match_monte_carlo(obs_dim, act_dim):
    """ũ = W x + b is Gaussian, so the moments of u = u_max ⊙ sin(ũ) are those of the true policy."""
    controller = make("linear", obs_dim, act_dim, seed=obs_dim)
    mean, cov, x = samples(obs_dim)
    with torch.no_grad():
        got = controller.moments(mean, cov)
    u, jacobian = values_and_jacobian(controller, x)
    check_against_samples(got, x, u, "linear controller", jacobian)


@pytest.mark.parametrize(("obs_dim", "act_dim"), [(1, 1), (4, 2)])
def test_rbf_moments_match_monte_carlo(obs_dim, act_dim):
    """ũ's moments are exact (the true RBF network at x ~ N(μ, Σ)); u's are exact for ũ moment-matched, as PILCO does."""
    controller = make("rbf", obs_dim, act_dim, seed=obs_dim)
    mean, cov, x = samples(obs_dim)
    with torch.no_grad():
        pre = controller.preactivation_moments(mean, cov)
        got = controller.moments(mean, cov)
    values, jacobian = values_and_jacobian(controller.preactivation, x)
    check_against_samples(pre, x, values, "RBF network ũ(x)", jacobian)
    check_moment_matched_chain(pre, mean, cov, squashing(controller), got, "RBF controller", seed=50 + obs_dim)


def test_rbf_after_trig_features_chains_by_compose():
    """z = (x, ẋ, θ, θ̇) → φ(z) = (x, ẋ, cos θ, sin θ, θ̇) → ũ → u, moment-matched at φ and at ũ."""
    controller = make("rbf", 5, 1, seed=5)
    mean, cov = random_gaussian(4, seed=35)
    features = trig_features(mean, cov, [2])
    with torch.no_grad():
        pre = compose(features, controller.preactivation_moments(features.mean, features.cov))
        chained = compose(features, controller.moments(features.mean, features.cov))
    check_moment_matched_chain(features, mean, cov, controller.preactivation, pre, "z → ũ", seed=45)
    check_moment_matched_chain(pre, mean, cov, squashing(controller), chained, "z → u", seed=46)
    assert torch.allclose(cov @ chained.input_gain, chained.input_cov)


def test_forward_is_the_written_out_policy():
    rbf, linear = make("rbf", 3, 2, seed=7), make("linear", 3, 2, seed=8)
    obs = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(9), dtype=DTYPE)
    expected = torch.zeros(2, 4, 2, dtype=DTYPE)
    with torch.no_grad():
        for a in range(2):
            for i in range(rbf.num_basis):
                scaled = (obs - rbf.centres[i]) / rbf.lengthscales[a]
                expected[..., a] += rbf.weights[a, i] * torch.exp(-0.5 * scaled.pow(2).sum(-1))
        assert torch.allclose(rbf(obs), rbf.action_bound * torch.sin(expected))
        pre = torch.einsum("aj,bnj->bna", linear.weight, obs) + linear.bias
        assert torch.allclose(linear(obs), linear.action_bound * torch.sin(pre))
        assert torch.allclose(linear(obs.numpy()), linear(obs))  # numpy observations from a real env
        assert torch.allclose(rbf(obs[0, 0]), rbf(obs)[0, 0])  # one observation, no batch
        assert bool((rbf(10 * obs).abs() <= rbf.action_bound).all())


def test_initialise_is_reproducible_and_centred_on_the_start_state():
    start, std = torch.tensor([0.0, 1.0, -1.0], dtype=DTYPE), torch.tensor([0.1, 0.2, 0.0], dtype=DTYPE)
    first, second = RBFController(3, 1, 2.0, num_basis=200), RBFController(3, 1, 2.0, num_basis=200)
    first.initialise(start, std, torch.Generator().manual_seed(3))
    second.initialise(start, std, torch.Generator().manual_seed(3))
    for p, q in zip(first.parameters(), second.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(first.centres[:, 2], torch.full((200,), -1.0, dtype=DTYPE))  # std 0: on the start state
    spread = first.centres[:, :2].std(0)
    assert bool(((spread - std[:2]).abs() < 0.3 * std[:2]).all())  # centres ~ N(μ₀, σ₀²)
    assert first.targets.abs().max() < 0.5 and torch.allclose(first.lengthscales, torch.ones(1, 3, dtype=DTYPE))
    linear = LinearController(3, 2, [1.0, 3.0])
    linear.initialise(start, std, torch.Generator().manual_seed(3))
    assert torch.allclose(linear(start), torch.zeros(2, dtype=DTYPE))  # no action at the mean start state
    assert linear.action_bound.tolist() == [1.0, 3.0] and first.action_bound.tolist() == [2.0]


def test_rbf_policy_is_the_gp_mean_of_its_pseudo_data():
    rbf = make("rbf", 3, 2, seed=12)
    with torch.no_grad():
        gram = np.stack([np.exp(-0.5 * (((rbf.centres[:, None] - rbf.centres[None]) / rbf.lengthscales[a]) ** 2)
                                .sum(-1).numpy()) for a in range(2)])  # k_a(c, c) written out: (A, N, N)
        beta = np.stack([np.linalg.solve(gram[a] + rbf.NOISE_VAR * np.eye(rbf.num_basis), rbf.targets[a].numpy())
                         for a in range(2)])
        assert np.allclose(rbf.weights.numpy(), beta, rtol=1e-8, atol=1e-8)
        # the GP mean at its own inputs: K (K + σ² I)⁻¹ y = y − σ² β
        assert torch.allclose(rbf.preactivation(rbf.centres), (rbf.targets - rbf.NOISE_VAR * rbf.weights).T)


def test_rbf_length_scales_are_bounded():
    rbf = RBFController(3, 2, 1.0, num_basis=4)
    low, high = LOG_LENGTHSCALE_BOUNDS
    assert rbf.parameter_bounds() == {"log_lengthscales": (low, high)}
    assert LinearController(3, 2, 1.0).parameter_bounds() == {}
    with torch.no_grad():
        rbf.log_lengthscales[0] = torch.tensor([100.0, -100.0, 0.5], dtype=DTYPE)
        rbf.targets.fill_(1e6)  # unbounded parameters are left alone
    rbf.project_()
    assert rbf.log_lengthscales[0].tolist() == [high, low, 0.5]
    assert bool((rbf.targets == 1e6).all())
    with pytest.raises(ValueError, match=r"lengthscale: expected numbers in \[0.00674, 148\]"):
        rbf.initialise(torch.zeros(3), torch.ones(3), torch.Generator().manual_seed(0), lengthscale=1e3)


@pytest.mark.parametrize("kind", ["linear", "rbf"])
def test_gradients_wrt_input_moments_and_parameters(kind):
    # few basis functions: gradcheck differentiates every parameter entry
    small = RBFController(2, 2, [1.0, 2.0], num_basis=3) if kind == "rbf" else LinearController(2, 2, [1.0, 2.0])
    controller = randomised(small, seed=11)
    mean, cov = random_gaussian(2, seed=36)
    root = torch.linalg.cholesky(cov)
    names = [name for name, _ in controller.named_parameters()]
    as_module = MomentsOf(controller)

    def moments(mu, lower, *params):
        state = {f"controller.{name}": p for name, p in zip(names, params)}
        out = torch.func.functional_call(as_module, state, (mu, lower @ lower.T))
        return out.mean, out.cov, out.input_cov, out.input_gain

    inputs = [mean.clone().requires_grad_(True), root.clone().requires_grad_(True)]
    inputs += [p.detach().clone().requires_grad_(True) for p in controller.parameters()]
    assert torch.autograd.gradcheck(moments, tuple(inputs))


class MomentsOf(torch.nn.Module):
    """A controller whose forward is its ``moments``, so ``functional_call`` can swap its parameters."""

    def __init__(self, controller):
        super().__init__()
        self.controller = controller

    def forward(self, mean, cov):
        return self.controller.moments(mean, cov)


def test_errors_name_the_argument():
    rbf = RBFController(5, 1, 2.0)
    with pytest.raises(ValueError, match=r"obs: expected \(\.\.\., O\) with O = 5, got \(3, 4\)"):
        rbf(torch.zeros(3, 4, dtype=DTYPE))
    with pytest.raises(ValueError, match="mean, cov"):
        rbf.moments(torch.zeros(4, dtype=DTYPE), torch.eye(4, dtype=DTYPE))
    with pytest.raises(ValueError, match="action_bound"):
        LinearController(2, 2, [1.0, 0.0])
    with pytest.raises(ValueError, match="action_bound"):
        LinearController(2, 2, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="num_basis"):
        RBFController(2, 1, 1.0, num_basis=0)
    with pytest.raises(ValueError, match="std"):
        rbf.initialise(np.zeros(5), -np.ones(5), torch.Generator())
    with pytest.raises(ValueError, match="mean"):
        rbf.initialise(np.zeros(4), np.ones(5), torch.Generator())


@pytest.mark.gpu
def test_controllers_run_on_cuda_like_on_cpu():
    mean, cov = random_gaussian(4, seed=37)
    for kind in ("linear", "rbf"):
        controller = make(kind, 4, 2, seed=12)
        on_cpu = controller.moments(mean, cov)
        moved = controller.to("cuda")
        on_gpu = moved.moments(mean.cuda(), cov.cuda())
        for field in ("mean", "cov", "input_cov", "input_gain"):
            assert torch.allclose(getattr(on_gpu, field).cpu(), getattr(on_cpu, field)), (kind, field)
        obs = mean.repeat(3, 1)
        assert torch.allclose(moved(obs.cuda()).cpu(), controller.cpu()(obs))
