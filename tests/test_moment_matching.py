"""Moment matching (PILCO): the closed forms against Monte Carlo with 10^6 samples, within 4 standard errors."""

from __future__ import annotations

import pytest
import torch
from moment_helpers import DTYPE, SAMPLES, check_against_samples, gaussian_samples, random_gaussian, within

from mbrl_course.models.moment_matching import (
    PredictionMoments,
    affine_moments,
    compose,
    expected_saturating_cost,
    gp_moments_at_gaussian_input,
    joint,
    se_kernel,
    sin_squash,
    trig_features,
)


def random_gp(dim: int, outputs: int, points: int, seed: int):
    """E GPs on random data: inputs X, β = (K + σ²I)⁻¹ y, (K + σ²I)⁻¹, length-scales, signal variances."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(points, dim, generator=gen, dtype=DTYPE)
    lengthscales = 0.6 + torch.rand(outputs, dim, generator=gen, dtype=DTYPE)
    signal_var = 0.5 + torch.rand(outputs, generator=gen, dtype=DTYPE)
    noise = 0.01 + 0.05 * torch.rand(outputs, generator=gen, dtype=DTYPE)
    targets = torch.randn(outputs, points, generator=gen, dtype=DTYPE)
    gram = se_kernel(inputs, inputs, lengthscales, signal_var) + noise[:, None, None] * torch.eye(points, dtype=DTYPE)
    inverse = torch.linalg.inv(gram)
    beta = (inverse @ targets[..., None])[..., 0]
    return inputs, beta, inverse, lengthscales, signal_var


def posterior_mean_gradient(x, inputs, beta, lengthscales, signal_var):
    """∂m_a/∂x = Σ_i β_ai k_a(x, x_i) Λ_a⁻¹ (x_i − x) at every sample: (N, D, E)."""
    weighted = se_kernel(x, inputs, lengthscales, signal_var) * beta[:, None, :]  # (E, N, n)
    toward = weighted @ inputs - weighted.sum(-1, keepdim=True) * x  # Σ_i β k (x_i − x): (E, N, D)
    return (toward * lengthscales.pow(-2)[:, None, :]).permute(1, 2, 0)


def monte_carlo(mean, cov, inputs, beta, inverse, lengthscales, signal_var, seed):
    """Per-sample posterior means m(x) (N, E), variances v(x) (N, E), inputs x (N, D), gradients ∂m/∂x (N, D, E)."""
    gen = torch.Generator().manual_seed(200 + seed)
    x = mean + torch.randn(SAMPLES, mean.shape[0], generator=gen, dtype=DTYPE) @ torch.linalg.cholesky(cov).T
    cross = se_kernel(x, inputs, lengthscales, signal_var)  # (E, N, n)
    m = (cross * beta[:, None, :]).sum(-1).T
    v = (signal_var[:, None] - ((cross @ inverse) * cross).sum(-1)).T
    return x, m, v, posterior_mean_gradient(x, inputs, beta, lengthscales, signal_var)


@pytest.mark.parametrize(("dim", "outputs", "seed"), [(1, 1, 0), (1, 2, 1), (4, 2, 2), (4, 3, 3)])
def test_mean_covariance_and_input_covariance_match_monte_carlo(dim, outputs, seed):
    gp = random_gp(dim, outputs, points=15, seed=seed)
    mean, cov = random_gaussian(dim, seed)
    got = gp_moments_at_gaussian_input(mean, cov, gp[0], gp[1], gp[3], gp[4], kernel_inverse=gp[2])
    x, m, v, gradient = monte_carlo(mean, cov, *gp, seed)
    n = float(SAMPLES)
    within(got.mean, m.mean(0), m.std(0) / n**0.5, "mean")
    centred = m - m.mean(0)
    products = centred[:, :, None] * centred[:, None, :]  # (N, E, E)
    mc_cov = products.mean(0) + torch.diag_embed(v.mean(0))
    se_cov = (products.var(0) / n + torch.diag_embed(v.var(0) / n)).sqrt()
    within(got.cov, mc_cov, se_cov, "covariance")
    xc = x - x.mean(0)
    io = xc[:, :, None] * centred[:, None, :]  # (N, D, E)
    within(got.input_cov, io.mean(0), io.std(0) / n**0.5, "input-output covariance")
    within(got.input_gain, gradient.mean(0), gradient.std(0) / n**0.5, "input gain E[∂f/∂x]ᵀ")
    assert torch.allclose(cov @ got.input_gain, got.input_cov)  # Stein: Σ C = Cov[x, f(x)]
    assert torch.allclose(got.cov, got.cov.T) and bool((torch.linalg.eigvalsh(got.cov) > 0).all())


def test_the_posterior_mean_gradient_oracle_is_autograd():
    gp = random_gp(3, 2, points=6, seed=5)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=DTYPE).requires_grad_(True)
    mean_at = se_kernel(x, gp[0], gp[3], gp[4]) * gp[1][:, None, :]  # (E, N, n)
    rows = [torch.autograd.grad(mean_at[a].sum(), x, retain_graph=True)[0] for a in range(2)]
    expected = torch.stack(rows, -1)  # (N, D, E)
    assert torch.allclose(posterior_mean_gradient(x.detach(), gp[0], gp[1], gp[3], gp[4]), expected)


def test_moments_are_batched_and_differentiable():
    gp = random_gp(3, 2, points=10, seed=7)
    means = torch.stack([random_gaussian(3, s)[0] for s in range(4)]).requires_grad_(True)
    covs = torch.stack([random_gaussian(3, s)[1] for s in range(4)])
    batched = gp_moments_at_gaussian_input(means, covs, gp[0], gp[1], gp[3], gp[4], kernel_inverse=gp[2])
    for k in range(4):
        one = gp_moments_at_gaussian_input(means[k], covs[k], gp[0], gp[1], gp[3], gp[4], kernel_inverse=gp[2])
        assert torch.allclose(batched.mean[k], one.mean) and torch.allclose(batched.cov[k], one.cov)
        assert torch.allclose(batched.input_cov[k], one.input_cov)
        assert torch.allclose(batched.input_gain[k], one.input_gain)
    assert torch.autograd.gradcheck(
        lambda mu: gp_moments_at_gaussian_input(mu, covs[:1], gp[0], gp[1], gp[3], gp[4], gp[2]).cov,
        (means[:1].detach().clone().requires_grad_(True),))


def test_a_point_input_gives_the_gp_posterior():
    gp = random_gp(2, 2, points=12, seed=8)
    point = torch.tensor([0.3, -0.2], dtype=DTYPE)
    got = gp_moments_at_gaussian_input(point, 1e-12 * torch.eye(2, dtype=DTYPE), gp[0], gp[1], gp[3], gp[4], gp[2])
    cross = se_kernel(point[None], gp[0], gp[3], gp[4])[:, 0]  # (E, n)
    assert torch.allclose(got.mean, (cross * gp[1]).sum(-1), atol=1e-8)
    variance = gp[4] - ((cross[:, None, :] @ gp[2])[:, 0] * cross).sum(-1)
    assert torch.allclose(torch.diagonal(got.cov), variance, atol=1e-8)


@pytest.mark.parametrize("dim", [1, 4])
def test_expected_saturating_cost_matches_monte_carlo(dim):
    mean, cov = random_gaussian(dim, seed=dim)
    gen = torch.Generator().manual_seed(300 + dim)
    target = torch.randn(dim, generator=gen, dtype=DTYPE)
    root = torch.randn(dim, dim, generator=gen, dtype=DTYPE)
    weight = root @ root.T / dim
    x = mean + torch.randn(SAMPLES, dim, generator=gen, dtype=DTYPE) @ torch.linalg.cholesky(cov).T
    offset = x - target
    cost = 1 - torch.exp(-0.5 * ((offset @ weight) * offset).sum(-1))
    got = expected_saturating_cost(mean, cov, target, weight)
    within(got, cost.mean(), cost.std() / SAMPLES**0.5, "expected cost")


def test_shapes_are_checked():
    gp = random_gp(2, 1, points=5, seed=9)
    with pytest.raises(ValueError, match="mean, cov"):
        gp_moments_at_gaussian_input(torch.zeros(3, dtype=DTYPE), torch.eye(3, dtype=DTYPE), gp[0], gp[1], gp[3], gp[4])
    with pytest.raises(ValueError, match="target, weight"):
        expected_saturating_cost(torch.zeros(2), torch.eye(2), torch.zeros(3), torch.eye(2))


def features_and_jacobian(z, angle_dims):
    """φ(z) (N, E) and ∂φ/∂z (N, D, E), written out entry by entry as the oracle."""
    columns, gradients = [], []
    eye = torch.eye(z.shape[1], dtype=DTYPE)
    for d in range(z.shape[1]):
        if d in angle_dims:
            columns += [torch.cos(z[:, d]), torch.sin(z[:, d])]
            gradients += [-torch.sin(z[:, d])[:, None] * eye[d], torch.cos(z[:, d])[:, None] * eye[d]]
        else:
            columns.append(z[:, d])
            gradients.append(eye[d].expand(z.shape[0], -1))
    return torch.stack(columns, -1), torch.stack(gradients, -1)


@pytest.mark.parametrize(("dim", "angle_dims", "seed"), [(2, (0,), 10), (4, (3, 1), 11)])
def test_trig_features_match_monte_carlo(dim, angle_dims, seed):
    mean, cov = random_gaussian(dim, seed)
    mean[list(angle_dims)] += 1.0  # angles away from 0, so cos and sin both vary
    shared = torch.zeros(dim, dtype=DTYPE)
    shared[list(angle_dims)] = 0.7
    cov = cov + shared[:, None] * shared  # a common component: the angles are strongly correlated
    got = trig_features(mean, cov, angle_dims)
    assert got.mean.shape == (dim + len(angle_dims),) and got.input_gain.shape == (dim, dim + len(angle_dims))
    z = gaussian_samples(mean, cov, seed=200 + seed)
    features, jacobian = features_and_jacobian(z, angle_dims)
    check_against_samples(got, z, features, f"trig_features{angle_dims}", jacobian)
    assert torch.allclose(cov @ got.input_gain, got.input_cov)  # Stein: Σ C = Cov[z, φ(z)]


@pytest.mark.parametrize(("dim", "seed"), [(1, 12), (3, 13)])
def test_sin_squash_matches_monte_carlo(dim, seed):
    mean, cov = random_gaussian(dim, seed)
    bound = 0.5 + torch.arange(dim, dtype=DTYPE)
    got = sin_squash(mean, cov, bound)
    pre = gaussian_samples(mean, cov, seed=200 + seed)
    jacobian = torch.diag_embed(bound * torch.cos(pre))  # ∂u_a/∂ũ_b = u_max,a cos ũ_a δ_ab
    check_against_samples(got, pre, bound * torch.sin(pre), "sin_squash", jacobian)
    assert bool((got.mean.abs() <= bound).all())


def test_trig_features_pass_through_and_point_inputs():
    mean, cov = random_gaussian(3, seed=14)
    none = trig_features(mean, cov, [])
    assert torch.equal(none.mean, mean) and torch.allclose(none.cov, cov) and torch.allclose(none.input_cov, cov)
    assert torch.equal(none.input_gain, torch.eye(3, dtype=DTYPE))
    point = trig_features(mean, 1e-14 * torch.eye(3, dtype=DTYPE), [0, 2])
    expected = torch.stack([torch.cos(mean[0]), torch.sin(mean[0]), mean[1], torch.cos(mean[2]), torch.sin(mean[2])])
    assert torch.allclose(point.mean, expected) and point.cov.abs().max() < 1e-12
    with pytest.raises(ValueError, match="angle_dims"):
        trig_features(mean, cov, [3])
    with pytest.raises(ValueError, match="angle_dims"):
        trig_features(mean, cov, [1, 1])
    with pytest.raises(ValueError, match="bound"):
        sin_squash(mean, cov, torch.ones(2, dtype=DTYPE))
    with pytest.raises(ValueError, match="mean, cov"):
        sin_squash(mean, cov[:2, :2], torch.ones(3, dtype=DTYPE))


def test_trig_features_and_sin_squash_are_batched():
    pairs = [random_gaussian(3, seed) for seed in range(15, 18)]
    means, covs = torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    bound = torch.tensor([1.0, 2.0, 0.5], dtype=DTYPE)
    trig, squash = trig_features(means, covs, [1]), sin_squash(means, covs, bound)
    for k, (mean, cov) in enumerate(pairs):
        for batched, one in ((trig, trig_features(mean, cov, [1])), (squash, sin_squash(mean, cov, bound))):
            for field in ("mean", "cov", "input_cov", "input_gain"):
                assert torch.allclose(getattr(batched, field)[k], getattr(one, field)), field


def test_compose_of_affine_maps_is_the_product_map_and_joint_stacks_the_blocks():
    gen = torch.Generator().manual_seed(18)
    mean, cov = random_gaussian(3, seed=18)
    m1, b1 = torch.randn(4, 3, generator=gen, dtype=DTYPE), torch.randn(4, generator=gen, dtype=DTYPE)
    m2, b2 = torch.randn(2, 4, generator=gen, dtype=DTYPE), torch.randn(2, generator=gen, dtype=DTYPE)
    first = affine_moments(mean, cov, m1, b1)
    chained = compose(first, affine_moments(first.mean, first.cov, m2, b2))
    direct = affine_moments(mean, cov, m2 @ m1, m2 @ b1 + b2)
    for field in ("mean", "cov", "input_cov", "input_gain"):
        assert torch.allclose(getattr(chained, field), getattr(direct, field)), field
    joint_mean, joint_cov = joint(mean, cov, first)
    stacked = torch.cat([torch.eye(3, dtype=DTYPE), m1])  # [x; M x + b] = [I; M] x + [0; b]
    assert torch.allclose(joint_mean, stacked @ mean + torch.cat([torch.zeros(3, dtype=DTYPE), b1]))
    assert torch.allclose(joint_cov, stacked @ cov @ stacked.T)
    with pytest.raises(ValueError, match="second"):
        compose(first, affine_moments(mean, cov, m1, b1))
    with pytest.raises(ValueError, match="moments"):
        joint(mean[:2], cov[:2, :2], first)


def test_trig_features_and_sin_squash_gradients():
    mean, cov = random_gaussian(3, seed=19)
    root = torch.linalg.cholesky(cov)

    def through(fn):
        def moments(mu, lower, *rest):
            got = fn(mu, lower @ lower.T, *rest)
            return got.mean, got.cov, got.input_cov, got.input_gain
        return moments

    inputs = (mean.clone().requires_grad_(True), root.clone().requires_grad_(True))
    assert torch.autograd.gradcheck(through(lambda m, c: trig_features(m, c, [0, 2])), inputs)
    bound = torch.tensor([1.0, 2.0, 0.5], dtype=DTYPE, requires_grad=True)
    assert torch.autograd.gradcheck(through(sin_squash), (*inputs, bound))


def test_prediction_moments_has_four_fields():
    assert [f for f in PredictionMoments.__dataclass_fields__] == ["mean", "cov", "input_cov", "input_gain"]
