"""Monte Carlo oracles shared by the moment-matching and controller tests: 10^6 samples, 4 standard errors."""

from __future__ import annotations

import torch

DTYPE = torch.float64
SAMPLES = 1_000_000


def random_gaussian(dim: int, seed: int):
    """A mean (dim,) and a well-conditioned covariance (dim, dim) with correlations."""
    gen = torch.Generator().manual_seed(100 + seed)
    mean = 0.5 * torch.randn(dim, generator=gen, dtype=DTYPE)
    root = 0.4 * torch.randn(dim, dim, generator=gen, dtype=DTYPE)
    return mean, root @ root.T + 0.05 * torch.eye(dim, dtype=DTYPE)


def gaussian_samples(mean, cov, seed: int, samples: int = SAMPLES):
    """x ~ N(mean, cov), (samples, D), through an eigendecomposition so a singular cov (a joint) is fine."""
    values, vectors = torch.linalg.eigh(cov)
    root = vectors * values.clamp_min(0).sqrt()
    gen = torch.Generator().manual_seed(seed)
    return mean + torch.randn(samples, mean.shape[0], generator=gen, dtype=DTYPE) @ root.T


def within(got, estimate, standard_error, what):
    gap = (got - estimate).abs()
    assert bool((gap <= 4 * standard_error + 1e-12).all()), f"{what}: {got} vs MC {estimate} ± {standard_error}"


def assert_symmetric_psd(cov, what):
    assert torch.allclose(cov, cov.transpose(-1, -2), atol=1e-14), f"{what}: not symmetric"
    smallest = torch.linalg.eigvalsh(cov).min()
    assert float(smallest) >= -1e-12, f"{what}: not positive semi-definite (eigenvalue {float(smallest)})"


def check_against_samples(got, x, y, what, jacobian=None):
    """``got`` (PredictionMoments of y = f(x)) against samples x (N, D), y (N, E) and, if given, ∂y/∂x (N, D, E)."""
    root_n = float(x.shape[0]) ** 0.5
    within(got.mean, y.mean(0), y.std(0) / root_n, f"{what}: mean")
    yc = y - y.mean(0)
    products = yc[:, :, None] * yc[:, None, :]  # (N, E, E)
    within(got.cov, products.mean(0), products.std(0) / root_n, f"{what}: covariance")
    del products
    io = (x - x.mean(0))[:, :, None] * yc[:, None, :]  # (N, D, E)
    within(got.input_cov, io.mean(0), io.std(0) / root_n, f"{what}: input-output covariance")
    del io
    if jacobian is not None:
        within(got.input_gain, jacobian.mean(0), jacobian.std(0) / root_n, f"{what}: input gain E[∂f/∂x]ᵀ")
    assert_symmetric_psd(got.cov, what)
