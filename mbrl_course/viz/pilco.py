"""Figures of the PILCO lecture (``lectures/04-pilco.ipynb``): GP regression, moment matching against Monte
Carlo, PILCO's predicted state distribution against the real trials, and particles beside moments.

In the lecture's notation (PILCO, Deisenroth & Rasmussen, 2011):

- :func:`plot_gp_regression`: GPs on 1-D data, m(x) ± 2 √v(x) on a grid, one panel per GP (e.g. before
  and after fitting ℓ, α², σ² by the marginal likelihood), its hyperparameters and log p(y | X) in the title;
- :func:`sample_at_gaussian_input`: Monte Carlo of p(f(x)), x ~ N(μ, Σ), the oracle of moment matching;
- :func:`plot_moment_matching_1d`: a Gaussian input pushed through a 1-D GP: the histogram of f(x), the
  moment-matched Gaussian over it and the plug-in Gaussian N(m(μ), v(μ)) that ignores the input's spread;
- :func:`plot_moment_matching_2d`: a 2-D Gaussian input through a GP with two outputs: samples of f(x) with
  the matched 2σ ellipse;
- :class:`PILCOTrial`, :func:`record_trial`: one trial of PILCO: the p(z_t) it predicted for the policy it ran
  and the real trajectory; :func:`plot_pilco_trials` (mean ± 2σ against the real states, per trial) and
  :func:`plot_cost_per_trial` (expected against real cost);
- :func:`policy_particles`: K particles of a policy in any model of the contract, from PILCO's start
  distribution; :func:`plot_particles_vs_moments`: those particles beside PILCO's mean ± 2σ.

Every figure is a :class:`matplotlib.figure.Figure` that is not registered with pyplot: in a notebook it shows
as the cell's value (or with ``display(fig)``); in a script, ``fig.savefig(path)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from mbrl_course._checks import as_tensor, check_positive_int, check_shape
from mbrl_course.agents.pilco import PILCOTask, Prediction
from mbrl_course.data import Batch, ReplayBuffer
from mbrl_course.models import rollout
from mbrl_course.models.gp import (
    GaussianProcess,
    obs_from_state,
    state_angle_indices,
    state_from_obs,
    wrap_angle,
)
from mbrl_course.models.moment_matching import expected_saturating_cost
from mbrl_course.viz.rollouts import _episode_arrays, _no_reward

__all__ = [
    "BAND",
    "PILCOTrial",
    "ellipse",
    "plot_cost_per_trial",
    "plot_gp_regression",
    "plot_moment_matching_1d",
    "plot_moment_matching_2d",
    "plot_particles_vs_moments",
    "plot_pilco_trials",
    "policy_particles",
    "record_trial",
    "sample_at_gaussian_input",
    "unwrap_angles",
]

BAND = 2.0
"""Bands and ellipses are mean ± BAND standard deviations."""
DATA_COLOR, TRUTH_COLOR, REAL_COLOR = "k", "0.45", "k"
MOMENTS_COLOR, PLUGIN_COLOR, PARTICLE_COLOR = "tab:blue", "tab:red", "tab:orange"


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().to(torch.float64).numpy()


def _gaussian_pdf(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    return np.exp(-0.5 * (x - mean) ** 2 / var) / math.sqrt(2 * math.pi * var)


def _check_gp(gp: GaussianProcess, input_dim: int, output_dim: int, what: str) -> None:
    if not isinstance(gp, GaussianProcess):
        raise TypeError(f"gp: expected a mbrl_course.models.GaussianProcess, got {type(gp).__name__}")
    if (gp.input_dim, gp.output_dim) != (input_dim, output_dim):
        raise ValueError(f"gp: {what} needs a GP from {input_dim} input(s) to {output_dim} output(s), got one from "
                         f"{gp.input_dim} to {gp.output_dim}")
    if gp.num_data == 0:
        raise ValueError("gp: expected a GP with data (call fit or set_data first), got one without")


def _hyperparameter_text(gp: GaussianProcess) -> str:
    """ℓ, α², σ² of a GP with one output, and its log marginal likelihood log p(y | X)."""
    ell = ", ".join(f"{v:.3g}" for v in gp.lengthscales[0].detach().tolist())
    with torch.no_grad():
        lml = float(gp.log_marginal_likelihood().sum())
    return (f"ℓ = {ell}, α² = {float(gp.signal_var[0].detach()):.3g}, σ² = {float(gp.noise_var[0].detach()):.3g}\n"
            f"log p(y | X) = {lml:.2f}")


# ---------------------------------------------------------------------------------------------
# 1. GP regression
# ---------------------------------------------------------------------------------------------


def plot_gp_regression(gps: Mapping[str, GaussianProcess], grid, *, truth=None, x_label: str = "input x",
                       y_label: str = "output y", title: str | None = None) -> Figure:
    """GP posteriors on 1-D data: m(x) ± 2 √v(x) of the latent f over ``grid``, one panel per GP.

        m(x) = k(x, X) (K + σ² I)⁻¹ y,    v(x) = α² − k(x, X) (K + σ² I)⁻¹ k(X, x)

    v(x) → α² far from the data X: the band widens to ± 2α where the GP has seen nothing.

    Args:
        gps: title -> a fitted :class:`~mbrl_course.models.GaussianProcess` with one input and one output (its
            own data are drawn), e.g. ``{"before fitting": gp0, "after fitting": gp1}``.
        grid: the inputs to draw at, (G,) or (G, 1).
        truth: the function the data came from, ``x (G,) -> y (G,)`` on torch tensors, drawn dashed; optional.
        x_label, y_label: axis labels. title: the figure's title.
    Returns:
        a figure with one axes per GP: the data (black dots), ``truth`` (dashed), m(x) (a line) and the band.
    """
    if not gps:
        raise ValueError("gps: expected at least one GaussianProcess, got an empty mapping")
    for gp in gps.values():
        _check_gp(gp, 1, 1, "plot_gp_regression")
    grid = as_tensor("grid", grid, dtype=torch.float64).reshape(-1)
    if grid.numel() < 2:
        raise ValueError(f"grid: expected at least 2 points, got {grid.numel()}")
    xs = _np(grid)
    fig = Figure(figsize=(5.0 * len(gps), 3.6), dpi=100, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(gps), sharey=True))
    for ax, (name, gp) in zip(axes, gps.items()):
        with torch.no_grad():
            mean, var = gp.posterior(grid[:, None].to(gp.dtype))
        m, sd = _np(mean[:, 0]), np.sqrt(_np(var[:, 0]))
        ax.fill_between(xs, m - BAND * sd, m + BAND * sd, color=MOMENTS_COLOR, alpha=0.2, lw=0,
                        label=f"m(x) ± {BAND:g} √v(x)")
        ax.plot(xs, m, color=MOMENTS_COLOR, lw=1.8, label="posterior mean m(x)")
        if truth is not None:
            ax.plot(xs, np.asarray(_np(as_tensor("truth(grid)", truth(grid)))).reshape(-1), ls="--",
                    color=TRUTH_COLOR, lw=1.2, label="true function")
        ax.plot(_np(gp.train_inputs[:, 0]), _np(gp.train_targets[:, 0]), "o", color=DATA_COLOR, ms=4,
                label="data (X, y)")
        ax.set_title(f"{name}\n{_hyperparameter_text(gp)}", fontsize=9)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(y_label)
    axes[0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------
# 2. Moment matching against Monte Carlo
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_at_gaussian_input(gp: GaussianProcess, mean, cov, num_samples: int, *,
                             generator: torch.Generator | None = None,
                             include_noise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo of p(f(x)) for x ~ N(μ, Σ): the distribution that moment matching replaces by a Gaussian.

        x_s = μ + L ε_s  (L Lᵀ = Σ),     f_{s,a} = m_a(x_s) + √v_a(x_s) η_{s,a},     ε_s, η_s ~ N(0, I)

    so that E[f] = E[m(x)] and Cov[f] = Cov[m(x)] + diag E[v(x)]: exactly the moments that
    :meth:`~mbrl_course.models.GaussianProcess.moments` computes in closed form (the E outputs are
    independent GPs, each drawn from its marginal at x_s).

    Args:
        gp: a GP with data, D inputs and E outputs. mean: μ (D,). cov: Σ (D, D), positive semi-definite.
        num_samples: S. generator: draws ε and η. include_noise: add σ_a² to v_a (samples of y instead of f).
    Returns:
        x (S, D) and f(x) (S, E).
    """
    if not isinstance(gp, GaussianProcess):
        raise TypeError(f"gp: expected a mbrl_course.models.GaussianProcess, got {type(gp).__name__}")
    num_samples = check_positive_int("num_samples", num_samples)
    D = gp.input_dim
    mean = as_tensor("mean", mean, dtype=gp.dtype, device=gp.device)
    cov = as_tensor("cov", cov, dtype=gp.dtype, device=gp.device)
    check_shape("mean", mean, (D,))
    check_shape("cov", cov, (D, D))
    eigenvalues, eigenvectors = torch.linalg.eigh(0.5 * (cov + cov.T))
    if float(eigenvalues.min()) < -1e-10 * max(1.0, float(eigenvalues.abs().max())):
        raise ValueError(f"cov: expected a positive semi-definite matrix, got one with an eigenvalue of "
                         f"{float(eigenvalues.min()):.3g}")
    root = eigenvectors * eigenvalues.clamp_min(0.0).sqrt()  # L with L Lᵀ = Σ (Σ may be singular)
    eps = torch.randn(num_samples, D, generator=generator, dtype=gp.dtype).to(gp.device)
    x = mean + eps @ root.T
    m, v = gp.posterior(x, include_noise=include_noise)
    eta = torch.randn(m.shape, generator=generator, dtype=gp.dtype).to(gp.device)
    return x, m + v.sqrt() * eta


def plot_moment_matching_1d(gp: GaussianProcess, mean: float, var: float, *, grid, samples: int = 20_000,
                            generator: torch.Generator | None = None, bins: int = 60,
                            title: str | None = None) -> Figure:
    """A Gaussian input x ~ N(μ, σ_x²) pushed through a 1-D GP: Monte Carlo against moment matching.

    Top left, the GP m(x) ± 2√v(x) with its data and a few of the samples (x_s, f_s); below it, p(x).
    Right, p(f(x)): the histogram of S samples (:func:`sample_at_gaussian_input`), the moment-matched Gaussian
    N(E[f], Var[f]) with the exact moments (:meth:`~mbrl_course.models.GaussianProcess.moments`) and the plug-in
    Gaussian N(m(μ), v(μ)), which takes the GP at the input's mean and forgets that x is uncertain.

    Args:
        gp: a GP with data, one input, one output. mean, var: μ and σ_x² of the input.
        grid: inputs to draw the GP at, (G,) or (G, 1). samples: S. generator: for the samples.
        bins: of the histogram. title: the figure's title.
    Returns:
        the figure; its axes are, in order: the GP, p(x), p(f(x)), and a text panel with the three pairs of
        moments (Monte Carlo, moment matching, plug-in).
    """
    _check_gp(gp, 1, 1, "plot_moment_matching_1d")
    mean, var = float(mean), float(var)
    if not (math.isfinite(mean) and math.isfinite(var) and var > 0):
        raise ValueError(f"mean, var: expected a finite mean and a variance > 0, got {mean!r} and {var!r}")
    grid = as_tensor("grid", grid, dtype=gp.dtype).reshape(-1)
    mu = torch.tensor([mean], dtype=gp.dtype, device=gp.device)
    sigma = torch.tensor([[var]], dtype=gp.dtype, device=gp.device)
    x_s, f_s = sample_at_gaussian_input(gp, mu, sigma, samples, generator=generator)
    with torch.no_grad():
        matched = gp.moments(mu, sigma)
        plug_mean, plug_var = gp.posterior(mu[None])
        gm, gv = gp.posterior(grid[:, None])
    mm_mean, mm_var = float(matched.mean[0]), float(matched.cov[0, 0])
    pi_mean, pi_var = float(plug_mean[0, 0]), float(plug_var[0, 0])
    f_np, x_np, xs = _np(f_s[:, 0]), _np(x_s[:, 0]), _np(grid)

    fig = Figure(figsize=(9.5, 6.2), dpi=100, layout="constrained")
    spec = fig.add_gridspec(2, 2, width_ratios=(3, 1.3), height_ratios=(3, 1.1))
    ax_gp = fig.add_subplot(spec[0, 0])
    ax_in = fig.add_subplot(spec[1, 0], sharex=ax_gp)
    ax_out = fig.add_subplot(spec[0, 1], sharey=ax_gp)
    ax_text = fig.add_subplot(spec[1, 1])

    m, sd = _np(gm[:, 0]), np.sqrt(_np(gv[:, 0]))
    ax_gp.fill_between(xs, m - BAND * sd, m + BAND * sd, color="0.6", alpha=0.25, lw=0,
                       label=f"GP m(x) ± {BAND:g}√v(x)")
    ax_gp.plot(xs, m, color="0.3", lw=1.5, label="GP mean m(x)")
    ax_gp.plot(_np(gp.train_inputs[:, 0]), _np(gp.train_targets[:, 0]), "o", color=DATA_COLOR, ms=3.5,
               label="data")
    shown = min(samples, 300)
    ax_gp.plot(x_np[:shown], f_np[:shown], ".", color=PARTICLE_COLOR, ms=2.5, alpha=0.5,
               label=f"samples (x_s, f_s), {shown} of {samples}")
    ax_gp.axvline(mean, color=PLUGIN_COLOR, ls=":", lw=1)
    ax_gp.set_ylabel("f(x)")
    ax_gp.set_title("the GP, and where the input's samples land", fontsize=10)
    ax_gp.legend(fontsize=7, loc="best")
    ax_gp.grid(alpha=0.3)

    ax_in.plot(xs, _gaussian_pdf(xs, mean, var), color=PARTICLE_COLOR, lw=1.5, label="p(x) = N(μ, σ_x²)")
    ax_in.axvline(mean, color=PLUGIN_COLOR, ls=":", lw=1, label="μ (the plug-in input)")
    ax_in.set_xlabel("input x")
    ax_in.set_ylabel("p(x)")
    ax_in.legend(fontsize=7, loc="upper right")
    ax_in.grid(alpha=0.3)

    ax_out.hist(f_np, bins=bins, density=True, orientation="horizontal", color=PARTICLE_COLOR, alpha=0.45,
                label=f"Monte Carlo, {samples} samples")
    span = np.linspace(min(f_np.min(), pi_mean - 4 * math.sqrt(pi_var), mm_mean - 4 * math.sqrt(mm_var)),
                       max(f_np.max(), pi_mean + 4 * math.sqrt(pi_var), mm_mean + 4 * math.sqrt(mm_var)), 400)
    ax_out.plot(_gaussian_pdf(span, mm_mean, mm_var), span, color=MOMENTS_COLOR, lw=2,
                label="moment matching N(E[f], Var[f])")
    ax_out.plot(_gaussian_pdf(span, pi_mean, pi_var), span, color=PLUGIN_COLOR, lw=1.5, ls="--",
                label="plug-in N(m(μ), v(μ))")
    ax_out.set_xlabel("p(f(x))")
    ax_out.set_ylabel("f(x)")
    ax_out.set_title("p(f(x))", fontsize=10)
    ax_out.legend(fontsize=6.5, loc="best")
    ax_out.grid(alpha=0.3)

    rows = [("Monte Carlo", float(f_np.mean()), float(f_np.var())), ("moment matching", mm_mean, mm_var),
            ("plug-in", pi_mean, pi_var)]
    ax_text.axis("off")
    ax_text.text(0.0, 0.95, "\n".join(f"{name:<16} mean {m_:+.3f}  var {v_:.3f}" for name, m_, v_ in rows),
                 va="top", ha="left", family="monospace", fontsize=7.5, transform=ax_text.transAxes)
    fig.suptitle(title or f"x ~ N({mean:g}, {var:g}) through the GP", fontsize=11)
    return fig


def ellipse(mean, cov, n_std: float = BAND, points: int = 100) -> np.ndarray:
    """The ellipse {μ + n_std · L (cos φ, sin φ)}, L Lᵀ = Σ: the points at Mahalanobis distance ``n_std``.

    For a 2-D Gaussian it holds 1 − exp(−n_std² / 2) of the mass (n_std = 2: 86.5 %).

    Args:
        mean: μ (2,). cov: Σ (2, 2). points: how many points (the last equals the first).
    Returns:
        (points, 2).
    """
    mean = np.asarray(_np(as_tensor("mean", mean)), dtype=float)
    cov = np.asarray(_np(as_tensor("cov", cov)), dtype=float)
    if mean.shape != (2,) or cov.shape != (2, 2):
        raise ValueError(f"mean, cov: expected shapes (2,) and (2, 2), got {mean.shape} and {cov.shape}")
    values, vectors = np.linalg.eigh(0.5 * (cov + cov.T))
    root = vectors * np.sqrt(np.clip(values, 0.0, None))
    phi = np.linspace(0.0, 2 * math.pi, check_positive_int("points", points))
    return mean + n_std * np.stack([np.cos(phi), np.sin(phi)], -1) @ root.T


def _inside(points: np.ndarray, mean: np.ndarray, cov: np.ndarray, n_std: float) -> float:
    """The fraction of ``points`` (S, 2) within Mahalanobis distance n_std of N(mean, cov)."""
    d = points - mean
    return float((np.einsum("si,ij,sj->s", d, np.linalg.inv(cov), d) <= n_std**2).mean())


def plot_moment_matching_2d(gp: GaussianProcess, mean, cov, *, samples: int = 3_000,
                            generator: torch.Generator | None = None,
                            input_labels: Sequence[str] = ("x₁", "x₂"),
                            output_labels: Sequence[str] = ("f₁(x)", "f₂(x)"), title: str | None = None) -> Figure:
    """A 2-D Gaussian input through a GP with two outputs: samples of f(x) with the matched 2σ ellipse.

    Left, samples of x ~ N(μ, Σ) and its 2σ ellipse over the GP's training inputs. Right, the samples of f(x)
    (:func:`sample_at_gaussian_input`), the ellipse of the moment-matched N(E[f], Cov[f]) (the outputs are
    correlated through the shared input, although the GPs are independent), the ellipse of the samples' own
    mean and covariance (which moment matching reproduces) and the plug-in N(m(μ), diag v(μ)). The titles
    give the fraction of samples inside each 2σ ellipse: 86.5 % for a Gaussian.

    Args:
        gp: a GP with data, two inputs and two outputs. mean: μ (2,). cov: Σ (2, 2).
        samples: S. generator: for the samples. input_labels, output_labels: axis labels. title: the figure's.
    """
    _check_gp(gp, 2, 2, "plot_moment_matching_2d")
    if len(input_labels) != 2 or len(output_labels) != 2:
        raise ValueError(f"input_labels, output_labels: expected two labels each, got {len(input_labels)} and "
                         f"{len(output_labels)}")
    mean = as_tensor("mean", mean, dtype=gp.dtype, device=gp.device)
    cov = as_tensor("cov", cov, dtype=gp.dtype, device=gp.device)
    x_s, f_s = sample_at_gaussian_input(gp, mean, cov, samples, generator=generator)
    with torch.no_grad():
        matched = gp.moments(mean, cov)
        plug_mean, plug_var = gp.posterior(mean[None])
    x_np, f_np = _np(x_s), _np(f_s)
    mm_mean, mm_cov = _np(matched.mean), _np(matched.cov)
    pi_mean, pi_cov = _np(plug_mean[0]), np.diag(_np(plug_var[0]))
    mc_mean, mc_cov = f_np.mean(0), np.cov(f_np.T)

    fig = Figure(figsize=(10.5, 4.6), dpi=100, layout="constrained")
    ax_in, ax_out = fig.subplots(1, 2)
    ax_in.plot(_np(gp.train_inputs[:, 0]), _np(gp.train_inputs[:, 1]), "x", color=DATA_COLOR, ms=3.5, alpha=0.6,
               label="GP training inputs")
    ax_in.plot(x_np[:, 0], x_np[:, 1], ".", color=PARTICLE_COLOR, ms=2, alpha=0.35, label="samples x_s")
    e = ellipse(mean, cov)
    ax_in.plot(e[:, 0], e[:, 1], color=PARTICLE_COLOR, lw=2, label=f"N(μ, Σ), {BAND:g}σ")
    ax_in.set(xlabel=input_labels[0], ylabel=input_labels[1])
    ax_in.set_title(f"input x ~ N(μ, Σ): {_inside(x_np, _np(mean), _np(cov), BAND):.1%} of the samples inside",
                    fontsize=10)
    ax_in.legend(fontsize=7, loc="best")
    ax_in.grid(alpha=0.3)

    ax_out.plot(f_np[:, 0], f_np[:, 1], ".", color=PARTICLE_COLOR, ms=2, alpha=0.35, label="samples f(x_s)")
    for (m_, c_), color, ls, label in (
            ((mm_mean, mm_cov), MOMENTS_COLOR, "-", "moment matching N(E[f], Cov[f])"),
            ((mc_mean, mc_cov), "k", ":", "the samples' mean and covariance"),
            ((pi_mean, pi_cov), PLUGIN_COLOR, "--", "plug-in N(m(μ), diag v(μ))")):
        e = ellipse(m_, c_)
        ax_out.plot(e[:, 0], e[:, 1], color=color, ls=ls, lw=2 if ls == "-" else 1.5, label=f"{label}, {BAND:g}σ")
    ax_out.set(xlabel=output_labels[0], ylabel=output_labels[1])
    ax_out.set_title(f"output f(x): {_inside(f_np, mm_mean, mm_cov, BAND):.1%} of the samples inside the matched "
                     f"ellipse,\n{_inside(f_np, pi_mean, pi_cov, BAND):.1%} inside the plug-in one", fontsize=10)
    ax_out.legend(fontsize=7, loc="best")
    ax_out.grid(alpha=0.3)
    fig.suptitle(title or "a 2-D Gaussian pushed through a GP with two outputs", fontsize=11)
    return fig


# ---------------------------------------------------------------------------------------------
# 3. PILCO's prediction against the real trials
# ---------------------------------------------------------------------------------------------


def unwrap_angles(states: torch.Tensor, angle_dims: Sequence[int], reference=None) -> torch.Tensor:
    """States along time with every angle made continuous: θ_0 moved by 2πk next to ``reference``, then
    θ_t = θ_{t−1} + wrap(θ_t − θ_{t−1}).

    Args:
        states: z (..., T, D), angles in any range (e.g. (−π, π] from
            :func:`~mbrl_course.models.gp.state_from_obs`).
        angle_dims: the indices of the angles in z.
        reference: (len(angle_dims),) or (..., len(angle_dims)): where θ_0 should land (default 0).
    Returns:
        z (..., T, D), a copy.
    """
    states = as_tensor("states", states)
    if states.dim() < 2:
        raise ValueError(f"states: expected shape (..., T, D), got {tuple(states.shape)}")
    out = states.clone()
    idx = list(angle_dims)
    if not idx:
        return out
    theta = states[..., idx]  # (..., T, k)
    ref = torch.zeros_like(theta[..., 0, :]) if reference is None else as_tensor(
        "reference", reference, dtype=theta.dtype, device=theta.device).expand_as(theta[..., 0, :])
    first = ref + wrap_angle(theta[..., 0, :] - ref)
    steps = wrap_angle(theta[..., 1:, :] - theta[..., :-1, :])
    out[..., idx] = torch.cat([first.unsqueeze(-2), first.unsqueeze(-2) + steps.cumsum(-2)], dim=-2)
    return out


def _saturating_cost(obs: torch.Tensor, task: PILCOTask) -> torch.Tensor:
    """c(x) = 1 − exp(−½ (x − x*)ᵀ W (x − x*)) of the task, for observations (..., O) -> (...): the expected
    cost of a point mass (Σ = 0)."""
    target = torch.tensor(task.target, dtype=obs.dtype, device=obs.device)
    weight = torch.tensor(task.weight, dtype=obs.dtype, device=obs.device)
    point = torch.zeros(*obs.shape, obs.shape[-1], dtype=obs.dtype, device=obs.device)
    return expected_saturating_cost(obs, point, target, weight)


@dataclass
class PILCOTrial:
    """One trial of PILCO: the p(z_t) it predicted for the policy before running it, and what happened."""

    trial: int
    """1-based: trial 1 is the random one."""
    states: torch.Tensor
    """the real z_0 .. z_T of the trial, angles unwrapped: (T+1, D)"""
    costs: torch.Tensor
    """the real c(x_t), t = 1..T, of the task's saturating cost: (T,)"""
    prediction: Prediction | None = None
    """PILCO's p(z_t) = N(m_t, S_t), t = 0..H, of the policy that ran (None: trial 1, random actions)"""


def record_trial(real_buffer: ReplayBuffer, steps: int, task: PILCOTask, *, trial: int,
                 prediction: Prediction | None = None) -> PILCOTrial:
    """The trial that ended last in D_real (its last ``steps`` transitions) as a :class:`PILCOTrial`.

    z_t = state_from_obs(i_t) with the angles unwrapped from the start distribution's mean (PILCO's m_1), so
    that the real trajectory and the prediction share one branch of every angle; c(x_t) is the task's cost of
    the observations i_1..i_T.

    Args:
        real_buffer: D_real. steps: T, the length of the last trial (``EpisodeResult.steps``).
        task: the :class:`~mbrl_course.agents.pilco.PILCOTask` (angles, start distribution, cost).
        trial: its 1-based number. prediction: PILCO's p(z_t) for the policy that ran it, or None.
    """
    steps = check_positive_int("steps", steps)
    if not isinstance(real_buffer, ReplayBuffer):
        raise TypeError(f"real_buffer: expected a ReplayBuffer (D_real), got {type(real_buffer).__name__}")
    if steps > len(real_buffer):
        raise ValueError(f"steps: expected at most the {len(real_buffer)} transitions in D_real, got {steps}")
    everything = real_buffer.all()
    episode = Batch(**{name: getattr(everything, name)[-steps:] for name in
                       ("obs", "action", "reward", "next_obs", "terminated")})
    obs, _ = _episode_arrays(episode) if steps > 1 else (torch.cat([episode.obs, episode.next_obs]), None)
    obs = obs.to(torch.float64)
    if obs.shape[-1] != len(task.target):
        raise ValueError(f"task: expects observations of size {len(task.target)}, D_real holds {obs.shape[-1]}")
    angle_dims = state_angle_indices(task.angles)
    states = unwrap_angles(state_from_obs(obs, task.angles), angle_dims,
                           reference=torch.tensor([task.start_mean[d] for d in angle_dims], dtype=torch.float64))
    if prediction is not None and prediction.mean.shape[-1] != states.shape[-1]:
        raise ValueError(f"prediction: expected states of size {states.shape[-1]}, got {prediction.mean.shape[-1]}")
    return PILCOTrial(trial=int(trial), states=states, costs=_saturating_cost(obs[1:], task), prediction=prediction)


def _time(n: int, dt: float | None) -> np.ndarray:
    return np.arange(n) * (dt if dt else 1.0)


def _angle_guides(ax, low: float, high: float, label: str | None) -> None:
    """Dotted lines at θ = 2πk (upright for PILCO's angles) inside [low, high]."""
    for k in range(math.ceil(low / (2 * math.pi)), math.floor(high / (2 * math.pi)) + 1):
        ax.axhline(2 * math.pi * k, color="tab:green", ls=":", lw=1, label=label)
        label = None


def _focus(ax, shown: np.ndarray, prediction: Prediction | None, d: int, margin: float = 1.0) -> None:
    """y-limits on what must be seen (``shown`` and the predicted mean) plus ``margin`` of their span on each side,
    no further than the band reaches: a band that grows far beyond the trajectories is cut at the frame."""
    values = [np.asarray(shown, dtype=float).ravel()]
    reach = [np.inf, -np.inf]
    if prediction is not None:
        m = _np(prediction.mean[:, d])
        sd = np.sqrt(np.clip(_np(prediction.cov[:, d, d]), 0.0, None))
        values.append(m)
        reach = [float((m - BAND * sd).min()), float((m + BAND * sd).max())]
    values = np.concatenate(values)
    low, high = float(values.min()), float(values.max())
    pad = margin * max(high - low, 1e-3)
    ax.set_ylim(min(low, max(low - pad, reach[0])) - 0.05 * pad, max(high, min(high + pad, reach[1])) + 0.05 * pad)


def _moments_band(ax, t: np.ndarray, prediction: Prediction, d: int, label: str, color: str = MOMENTS_COLOR) -> None:
    m = _np(prediction.mean[:, d])
    sd = np.sqrt(np.clip(_np(prediction.cov[:, d, d]), 0.0, None))
    ax.fill_between(t, m - BAND * sd, m + BAND * sd, color=color, alpha=0.22, lw=0, label=f"{label} ± {BAND:g}σ")
    ax.plot(t, m, color=color, lw=1.8, label=label)


def _check_dims(dims: Sequence[int], labels: Sequence[str] | None, state_dim: int) -> list[str]:
    if not dims or any(not 0 <= d < state_dim for d in dims):
        raise ValueError(f"dims: expected indices of the state z in [0, {state_dim}), got {list(dims)}")
    if labels is None:
        return [f"z[{d}]" for d in dims]
    if len(labels) != len(dims):
        raise ValueError(f"labels: expected one label per entry of dims ({len(dims)}), got {len(labels)}")
    return list(labels)


def plot_pilco_trials(trials: Sequence[PILCOTrial], *, dims: Sequence[int] = (0, 2),
                      labels: Sequence[str] | None = ("cart position x [m]", "pole angle θ [rad]"),
                      angle_dims: Sequence[int] = (2,), dt: float | None = 0.1, title: str | None = None) -> Figure:
    """PILCO's predicted p(z_t) against the real trajectory, one row per trial.

    Each row: for each state entry d of ``dims``, m_t,d ± 2 √S_t,dd of the policy PILCO optimised before the
    trial (blue) and the real z_t,d of the trial (black); the last panel, the expected cost E[c(x_t)] it
    predicted (blue) against the real c(x_t) (black). A trial without a prediction (the random first one)
    shows the real trajectory alone. Angles get dotted lines where they are upright (θ = 2πk). The y-axis
    frames the real trajectory and the predicted mean with a margin: a band far wider than both runs off it.

    Args:
        trials: from :func:`record_trial`, oldest first. dims: which entries of z to draw.
        labels: one per entry of ``dims``. angle_dims: the entries of z that are angles.
        dt: seconds per step (None: the axis counts steps). title: the figure's title.
    """
    if not trials:
        raise ValueError("trials: expected at least one PILCOTrial, got none")
    state_dim = trials[0].states.shape[-1]
    labels = _check_dims(dims, labels, state_dim)
    unit = "time t [s]" if dt else "step t"
    cols = len(dims) + 1
    fig = Figure(figsize=(4.0 * cols, 2.5 * len(trials) + 0.6), dpi=100, layout="constrained")
    axes = np.asarray(fig.subplots(len(trials), cols, squeeze=False, sharex=True))
    for row, trial in zip(axes, trials):
        T = trial.states.shape[0] - 1
        real = _np(trial.states)
        p = trial.prediction
        for ax, d, label in zip(row, dims, labels):
            if p is not None:
                _moments_band(ax, _time(p.mean.shape[0], dt), p, d, "predicted m_t")
            ax.plot(_time(T + 1, dt), real[:, d], color=REAL_COLOR, lw=1.5, label="real z_t")
            _focus(ax, real[:, d], p, d)
            if d in angle_dims:
                low, high = ax.get_ylim()
                _angle_guides(ax, low, high, "upright")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        ax = row[-1]
        if p is not None:
            ax.plot(_time(p.expected_cost.shape[0] + 1, dt)[1:], _np(p.expected_cost), color=MOMENTS_COLOR, lw=1.8,
                    label="predicted E[c(x_t)]")
        ax.plot(_time(T + 1, dt)[1:], _np(trial.costs), color=REAL_COLOR, lw=1.5, label="real c(x_t)")
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("cost c")
        ax.grid(alpha=0.3)
        what = ("random actions" if p is None else
                f"predicted J = Σ E[c] = {float(p.expected_cost.sum()):.1f} over {p.expected_cost.shape[0]} steps")
        real_sum = float(trial.costs[: None if p is None else p.expected_cost.shape[0]].sum())
        row[0].set_title(f"trial {trial.trial}: {what}; real Σ c = {real_sum:.1f}", fontsize=9, loc="left")
    for ax in axes[-1]:
        ax.set_xlabel(unit)
    for ax in axes[0] if trials[0].prediction is not None else axes[min(1, len(trials) - 1)]:
        ax.legend(fontsize=6.5, loc="best")
    fig.suptitle(title or "PILCO: predicted p(z_t) of each policy against its real trial", fontsize=11)
    return fig


def plot_cost_per_trial(trials: Sequence[PILCOTrial], *, title: str | None = None) -> Figure:
    """The mean cost per step of every trial: PILCO's prediction (1/H Σ_t E[c(x_t)]) against the real one.

    The real mean is over the same first H steps as the prediction (all T steps for the random trial).
    """
    if not trials:
        raise ValueError("trials: expected at least one PILCOTrial, got none")
    fig = Figure(figsize=(6.0, 3.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    numbers = [t.trial for t in trials]
    real = [float(t.costs[: None if t.prediction is None else t.prediction.expected_cost.shape[0]].mean())
            for t in trials]
    ax.plot(numbers, real, "o-", color=REAL_COLOR, label="real: mean c(x_t)")
    predicted = [(t.trial, float(t.prediction.expected_cost.mean())) for t in trials if t.prediction is not None]
    if predicted:
        ax.plot(*zip(*predicted), "s--", color=MOMENTS_COLOR, label="predicted: mean E[c(x_t)]")
    random = [t.trial for t in trials if t.prediction is None]
    if random:
        ax.axvspan(min(random) - 0.5, max(random) + 0.5, color="0.85", label="random actions")
    ax.set(xlabel="trial", ylabel="mean cost per step", ylim=(-0.02, 1.02))
    ax.set_xticks(numbers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title or "cost per trial: predicted before the trial, and real", fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------
# 4. Particles beside moments
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def policy_particles(model, controller: torch.nn.Module, task: PILCOTask, horizon: int, *, particles: int = 30,
                     generator: torch.Generator | None = None, propagate: Mapping | None = None,
                     start: Prediction | None = None) -> torch.Tensor:
    """K particles of the policy in f_ψ from PILCO's start distribution (one :func:`~mbrl_course.models.rollout`).

        z^r_0 ~ N(m_0, S_0),   i^r_t = φ(z^r_t),   u^r_t = π(i^r_t),   i^r_{t+1} ~ f_ψ(i^r_t, u^r_t)

    Args:
        model: f_ψ, any model of the contract (a ``DropoutDynamics`` for Deep PILCO, or PILCO's own
            ``GPDynamics``, whose sampling propagator is the Monte Carlo of PILCO's moment matching).
        controller: u = π(i), ``obs (M, O) -> action (M, A)``. task: angles and p(z_0) = N(m_0, diag s²).
        horizon: H. particles: K. generator: the start draws and the model's noise.
        propagate: options of ``model.propagator``. start: a prediction whose ``mean[0]``, ``cov[0]`` replace
            the task's p(z_0).
    Returns:
        z^r_t: (K, H+1, D), angles unwrapped.
    """
    horizon = check_positive_int("horizon", horizon)
    particles = check_positive_int("particles", particles)
    dtype, device = model.dtype, model.device
    if start is None:
        mean = torch.tensor(task.start_mean, dtype=torch.float64)
        cov = torch.diag(torch.tensor(task.start_std, dtype=torch.float64) ** 2)
    else:
        mean, cov = start.mean[0].cpu().to(torch.float64), start.cov[0].cpu().to(torch.float64)
    root = torch.linalg.cholesky(cov + 1e-12 * torch.eye(mean.shape[0], dtype=torch.float64))
    z0 = mean + torch.randn(particles, mean.shape[0], generator=generator, dtype=torch.float64) @ root.T
    param = next(controller.parameters())

    def policy(obs: torch.Tensor) -> torch.Tensor:
        return controller(obs.to(param.device, param.dtype)).to(device, dtype)

    out = rollout(model, obs_from_state(z0, task.angles).to(device, dtype), policy=policy, horizon=horizon,
                  reward_fn=_no_reward, generator=generator, propagate=dict(propagate or {}))
    states = state_from_obs(out.obs.transpose(0, 1).to(torch.float64).cpu(), task.angles)  # (K, H+1, D)
    angle_dims = state_angle_indices(task.angles)
    return unwrap_angles(states, angle_dims, reference=mean[list(angle_dims)])


def plot_particles_vs_moments(particles, prediction: Prediction, *, dims: Sequence[int] = (0, 2),
                              labels: Sequence[str] | None = ("cart position x [m]", "pole angle θ [rad]"),
                              dt: float | None = 0.1, max_lines: int = 40, particle_label: str = "particles",
                              title: str | None = None) -> Figure:
    """Particles z^r_t beside moments: the particles' lines and their mean ± 2 std, PILCO's m_t ± 2 √S_t.

    Args:
        particles: (K, T+1, D), e.g. from :func:`policy_particles`. prediction: PILCO's p(z_t), t = 0..H. The
            y-axis frames the particles and the predicted mean with a margin (a band far wider runs off it).
        dims: entries of z to draw; labels: one per entry. dt: seconds per step. max_lines: particles drawn as
            lines (their band uses all K). particle_label: what the particles are. title: the figure's.
    """
    particles = as_tensor("particles", particles, dtype=torch.float64)
    if particles.dim() != 3:
        raise ValueError(f"particles: expected shape (K, T+1, D), got {tuple(particles.shape)}")
    if particles.shape[-1] != prediction.mean.shape[-1]:
        raise ValueError(f"particles: expected states of size {prediction.mean.shape[-1]} (the prediction's), "
                         f"got {particles.shape[-1]}")
    labels = _check_dims(dims, labels, particles.shape[-1])
    K = particles.shape[0]
    p_np = _np(particles)
    fig = Figure(figsize=(5.2 * len(dims), 3.6), dpi=100, layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(dims)))
    t_p = _time(p_np.shape[1], dt)
    for ax, d, label in zip(axes, dims, labels):
        _moments_band(ax, _time(prediction.mean.shape[0], dt), prediction, d, "PILCO's m_t")
        for r in range(min(K, max_lines)):
            ax.plot(t_p, p_np[r, :, d], color=PARTICLE_COLOR, lw=0.6, alpha=0.5,
                    label=f"{particle_label} ({K})" if r == 0 else None)
        mean, sd = p_np[:, :, d].mean(0), p_np[:, :, d].std(0)
        ax.plot(t_p, mean + BAND * sd, color=PARTICLE_COLOR, ls="--", lw=1.5, label=f"particles' mean ± {BAND:g} std")
        ax.plot(t_p, mean - BAND * sd, color=PARTICLE_COLOR, ls="--", lw=1.5)
        _focus(ax, p_np[:, :, d], prediction, d)
        ax.set(xlabel="time t [s]" if dt else "step t", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title or f"{particle_label} beside PILCO's moments", fontsize=11)
    return fig
