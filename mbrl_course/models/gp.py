"""PILCO's dynamics model: Gaussian processes, i' = f_ψ(i, u) := p(i' | i, u) = GP (Deisenroth & Rasmussen, 2011).

One GP per state dimension a = 1..E, all on the same D-dimensional inputs X (n, D) with targets y_a (n,),
the squared-exponential (SE) kernel with automatic relevance determination (ARD) and Gaussian noise:

    k_a(x, x') = α_a² exp(−½ (x − x')ᵀ Λ_a⁻¹ (x − x')),   Λ_a = diag(ℓ_a1², .., ℓ_aD²),   y_a = f_a(X) + ε,  ε ~ N(0, σ_a² I)

Exact GP (n ≤ ``sparse_above``): with K_a = k_a(X, X),

    β_a = (K_a + σ_a² I)⁻¹ y_a
    m_a(x) = k_a(x, X) β_a,       v_a(x) = α_a² − k_a(x, X) (K_a + σ_a² I)⁻¹ k_a(X, x)     (+ σ_a² for y)
    log p(y_a | X) = −½ y_aᵀ β_a − ½ log|K_a + σ_a² I| − n/2 log 2π

FITC sparse GP (n > ``sparse_above``; Snelson & Ghahramani, 2006, as PILCO does beyond a few hundred
points): M inducing inputs X̄ (M, D), shared by the outputs, summarise the data. With
Q_nn = K_nm K_mm⁻¹ K_mn and the FITC diagonal Λ = diag(K_nn − Q_nn) + σ² I,

    p(y_a | X) ≈ N(y_a | 0, Q_nn + Λ),   Σ_a = (K_mm + K_mn Λ⁻¹ K_nm)⁻¹
    β_a = Σ_a K_mn Λ⁻¹ y_a,   m_a(x) = k_a(x, X̄) β_a,   v_a(x) = α_a² − k_a(x, X̄) (K_mm⁻¹ − Σ_a) k_a(X̄, x)

Both are "β and a matrix whose quadratic form gives the variance": the cached ``support_inputs``
(X or X̄), ``beta`` and ``kernel_inverse`` ((K + σ² I)⁻¹ or K_mm⁻¹ − Σ) are all that prediction and the
moment matching of :mod:`~mbrl_course.models.moment_matching` need, so one formula serves both.
Why sparse: fitting the exact GP costs O(E n³) per likelihood evaluation and one moment-matching step
O(E² n² D); FITC costs O(E n M²) and O(E² M² D). The default 300 / 200 (sparse above 300 points,
200 inducing inputs) is the size at which PILCO's cart-pole switched to FITC.

The state of PILCO and the observation of the env differ where the observation holds an angle as
(cos θ, sin θ): the Gaussian state z keeps θ itself (:func:`state_from_obs`, :func:`obs_from_state`),
the GP sees the observation (PILCO's augmented input) and learns Δz = z' − z with angle differences
wrapped to (−π, π] (:func:`wrap_angle`). :class:`GPDynamics` puts this together behind the model
contract of :mod:`~mbrl_course.models.base`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from mbrl_course._checks import (
    as_tensor,
    check_choice,
    check_positive_float,
    check_positive_int,
    check_shape,
    resolve_device,
)
from mbrl_course.data import _random_perm
from mbrl_course.models.base import Propagator
from mbrl_course.models.imagination import _standard_normal
from mbrl_course.models.moment_matching import PredictionMoments, gp_moments_at_gaussian_input, se_kernel

__all__ = [
    "GPCholeskyError",
    "GPDynamics",
    "GPFitReport",
    "GaussianProcess",
    "JitterWarning",
    "obs_from_state",
    "state_angle_indices",
    "state_from_obs",
    "wrap_angle",
]

_LOG_2PI = math.log(2 * math.pi)
FLOOR = 1e-12
"""Every length-scale, signal and noise variance is FLOOR + softplus(raw) > 0."""
JITTER_START = 1e-8
"""The first jitter tried after a failed Cholesky, relative to the mean of the matrix's diagonal."""
JITTER_CAP = 1e-4
"""The largest relative jitter tried (×10 per try from JITTER_START); beyond it :class:`GPCholeskyError`."""
PENALTY_POWER = 30
"""p of PILCO's hyperparameter penalty ((log r − log r₀) / log r_max)^p: flat inside, a wall outside."""
LENGTHSCALE_RATIO = 100.0
"""PILCO's curb on length-scales: ℓ_ad beyond 100× (or below 1/100 of) the spread of input d is penalised."""
SNR_LIMIT = 500.0
"""PILCO's curb on the signal-to-noise ratio α_a / σ_a: beyond 500 (or below 1/500) is penalised."""
PROPAGATIONS_GP: tuple[str, ...] = ("sample", "mean", "ts1", "ts_inf", "expectation")
"""What ``GPDynamics.propagator(propagation=...)`` accepts: "sample" (and the ensembles' "ts1", "ts_inf",
which mean the same for one GP) or "mean" (and "expectation")."""


# ---------------------------------------------------------------------------------------------- angles
def wrap_angle(x: torch.Tensor) -> torch.Tensor:
    """x wrapped to (−π, π]: x − 2π ⌈(x − π) / 2π⌉ (differentiable, gradient 1), any shape."""
    return x - 2 * math.pi * torch.ceil((x - math.pi) / (2 * math.pi))


@lru_cache(maxsize=64)
def _layout(obs_dim: int, angles: tuple[int, ...]) -> tuple[list[int], list[int], list[int], list[int]]:
    """Where things sit for ``angles`` (cos indices in the observation) and an observation of ``obs_dim``.

    Returns (plain_obs, plain_state, angle_state, state_order): the observation indices of the entries
    that are not angles, their indices in z, the indices of the angles in z (c_k − k), and the order
    that puts [plain entries, angles] back into z's order.
    """
    if obs_dim < 1:
        raise ValueError(f"obs_dim: expected an integer >= 1, got {obs_dim}")
    previous = -2
    for c in angles:
        if c < 0 or c + 1 >= obs_dim:
            raise ValueError(f"angles: expected cos indices c with c + 1 < obs_dim = {obs_dim} (sin at c + 1), "
                             f"got {angles}")
        if c <= previous + 1:
            raise ValueError(f"angles: expected increasing cos indices at least 2 apart (each (cos, sin) pair "
                             f"is two entries), got {angles}")
        previous = c
    taken = {c for c in angles} | {c + 1 for c in angles}
    plain_obs = [i for i in range(obs_dim) if i not in taken]
    angle_state = [c - k for k, c in enumerate(angles)]
    plain_state = [i for i in range(obs_dim - len(angles)) if i not in angle_state]
    order = plain_state + angle_state
    state_order = sorted(range(len(order)), key=order.__getitem__)
    return plain_obs, plain_state, angle_state, state_order


def _angles(angles: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(c) for c in angles)
    except (TypeError, ValueError) as err:
        raise TypeError(f"angles: expected a sequence of integers (cos indices), got {angles!r}") from err
    if any(isinstance(c, bool) or float(c) != int(c) for c in angles):
        raise TypeError(f"angles: expected a sequence of integers (cos indices), got {angles!r}")
    return out


def state_angle_indices(angles: Sequence[int]) -> tuple[int, ...]:
    """The indices in z of the angles whose (cos, sin) sit at observation indices ``angles``: c_k − k.

    >>> state_angle_indices((2,))   # CartPoleSwingUp: obs (x, ẋ, cos θ, sin θ, θ̇), z (x, ẋ, θ, θ̇)
    (2,)
    """
    angles = _angles(angles)
    return tuple(c - k for k, c in enumerate(angles))


def state_from_obs(obs: torch.Tensor, angles: Sequence[int]) -> torch.Tensor:
    """z from the observation: each (cos θ, sin θ) pair at (c, c + 1) becomes θ = atan2(sin θ, cos θ).

    Args:
        obs: (..., O). angles: the cos indices c_0 < c_1 < .. in the observation.
    Returns:
        z: (..., O − len(angles)), the angles in (−π, π] at indices c_k − k. Differentiable.
    """
    angles = _angles(angles)
    if obs.dim() == 0:
        raise ValueError("obs: expected shape (..., O), got a scalar")
    if not angles:
        return obs
    plain_obs, _, _, state_order = _layout(obs.shape[-1], angles)
    cos_idx = list(angles)
    sin_idx = [c + 1 for c in angles]
    theta = torch.atan2(obs[..., sin_idx], obs[..., cos_idx])
    return torch.cat([obs[..., plain_obs], theta], dim=-1)[..., state_order]


def obs_from_state(state: torch.Tensor, angles: Sequence[int]) -> torch.Tensor:
    """φ(z): the observation of a state, each angle θ at z index c_k − k becoming (cos θ, sin θ) at (c_k, c_k + 1).

    Args:
        state: z, (..., S). angles: the cos indices in the observation (O = S + len(angles)).
    Returns:
        obs: (..., S + len(angles)). Differentiable.
    """
    angles = _angles(angles)
    if state.dim() == 0:
        raise ValueError("state: expected shape (..., S), got a scalar")
    if not angles:
        return state
    obs_dim = state.shape[-1] + len(angles)
    plain_obs, plain_state, angle_state, _ = _layout(obs_dim, angles)
    theta = state[..., angle_state]
    order = plain_obs + list(angles) + [c + 1 for c in angles]
    obs_order = sorted(range(obs_dim), key=order.__getitem__)
    return torch.cat([state[..., plain_state], torch.cos(theta), torch.sin(theta)], dim=-1)[..., obs_order]


def _obs_moments(mean: torch.Tensor, var: torch.Tensor, angles: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-entry mean and variance of obs = φ(z) for z ~ N(mean, diag(var)): (..., S) → (..., O), (..., O).

    For an angle θ ~ N(m, v) (exact, from E[e^{ikθ}] = e^{ikm − k²v/2}):
        E[cos θ] = e^{−v/2} cos m,   E[sin θ] = e^{−v/2} sin m,
        E[cos² θ] = ½ (1 + e^{−2v} cos 2m),   E[sin² θ] = ½ (1 − e^{−2v} cos 2m).
    """
    if not angles:
        return mean, var
    obs_dim = mean.shape[-1] + len(angles)
    plain_obs, plain_state, angle_state, _ = _layout(obs_dim, angles)
    m, v = mean[..., angle_state], var[..., angle_state]
    damp = torch.exp(-0.5 * v)
    mean_cos, mean_sin = damp * torch.cos(m), damp * torch.sin(m)
    wide = torch.exp(-2 * v) * torch.cos(2 * m)
    var_cos = 0.5 * (1 + wide) - mean_cos.square()
    var_sin = 0.5 * (1 - wide) - mean_sin.square()
    order = plain_obs + list(angles) + [c + 1 for c in angles]
    obs_order = sorted(range(obs_dim), key=order.__getitem__)
    out_mean = torch.cat([mean[..., plain_state], mean_cos, mean_sin], dim=-1)[..., obs_order]
    out_var = torch.cat([var[..., plain_state], var_cos, var_sin], dim=-1)[..., obs_order]
    return out_mean, out_var.clamp_min(0.0)


# ---------------------------------------------------------------------------------------------- GP
class JitterWarning(RuntimeWarning):
    """A kernel matrix was not numerically positive definite; a jitter on its diagonal made it so."""


class GPCholeskyError(torch.linalg.LinAlgError):
    """A kernel matrix stayed not positive definite with the largest jitter (:data:`JITTER_CAP`)."""


@dataclass
class GPFitReport:
    """What one :meth:`GaussianProcess.fit` did."""

    log_likelihood: list[float]
    """Σ_a log p(y_a | X) (FITC's approximation when sparse) before the first iteration and after each one"""
    iterations: int
    """L-BFGS iterations run (fewer than asked when it converged or stopped)"""
    sparse: bool
    """True when FITC with inducing inputs was fitted"""
    jitter: float
    """the largest jitter added to a kernel diagonal while fitting, relative to its mean diagonal (0: none)"""
    converged: bool = False
    """True when L-BFGS stopped on its own tolerances before ``iterations``"""
    message: str = ""
    """why fitting stopped early when it did not converge (a failed factorisation, a non-finite objective)"""


class _StopFit(Exception):
    """Raised inside the L-BFGS closure to abandon an iteration (non-finite objective, factorisation failure)."""


def _softplus_inverse(value: torch.Tensor) -> torch.Tensor:
    """raw with FLOOR + softplus(raw) = value: y + log(−expm1(−y)) for y = value − FLOOR (stable for large y)."""
    y = value - FLOOR
    return y + torch.log(-torch.expm1(-y))


def _bad_rows(tensor: torch.Tensor) -> list[int]:
    return torch.nonzero(~torch.isfinite(tensor).all(-1)).flatten().tolist()


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(map(str, rows[:10]))
    return f"[{shown}{', ...' if len(rows) > 10 else ''}] ({len(rows)} in all)"


class GaussianProcess(nn.Module):
    """E independent GPs with SE-ARD kernels on D inputs, exact or FITC-sparse, fitted by type-II maximum likelihood.

    Hyperparameters per output a (positive by FLOOR + softplus of an unconstrained parameter):
    length-scales ℓ_a (D,), signal variance α_a², noise variance σ_a².

    Args:
        input_dim: D. output_dim: E.
        sparse_above: use FITC once the data hold more than this many points (O(n³) per likelihood
            evaluation and O(E² n² D) per moment-matching step make the exact GP slow beyond a few
            hundred points).
        inducing: M, the number of inducing inputs of FITC (at most n).
        min_noise_var: σ²_min, a floor under every noise variance, σ_a² = max(σ²_raw, σ²_min) (0: none). Data
            from a deterministic simulator drive σ_a² to ~1e-6 α_a² and (K + σ² I)⁻¹ to ~1e8, where sums over it
            lose 1e-4 of their value (measured on PILCO's cart-pole); a floor at the level of a real sensor's
            noise keeps the predictions and their gradients accurate.
        dtype, device: of the hyperparameters, the data and every computation (float64: moment matching
            and the Cholesky factorisations need it).
    """

    def __init__(self, input_dim: int, output_dim: int, *, sparse_above: int = 300, inducing: int = 200,
                 min_noise_var: float = 0.0, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.sparse_above = check_positive_int("sparse_above", sparse_above)
        self.inducing = check_positive_int("inducing", inducing)
        self.min_noise_var = check_positive_float("min_noise_var", min_noise_var, allow_zero=True)
        if not dtype.is_floating_point:
            raise TypeError(f"dtype: expected a floating dtype, got {dtype}")
        device = resolve_device(device)
        E, D = self.output_dim, self.input_dim
        one = torch.ones((), dtype=dtype, device=device)
        self.raw_lengthscales = nn.Parameter(_softplus_inverse(one).expand(E, D).clone())
        self.raw_signal_var = nn.Parameter(_softplus_inverse(one).expand(E).clone())
        self.raw_noise_var = nn.Parameter(_softplus_inverse(0.01 * one).expand(E).clone())
        self.inducing_inputs = nn.Parameter(torch.zeros(0, D, dtype=dtype, device=device))
        """X̄ (M, D) of FITC; (0, D) for the exact GP."""
        self.register_buffer("train_inputs", torch.zeros(0, D, dtype=dtype, device=device))
        self.register_buffer("train_targets", torch.zeros(0, E, dtype=dtype, device=device))
        self._cache: dict[str, Any] | None = None
        self._warned_jitter = False
        self._jitter_used = 0.0

    # ------------------------------------------------------------------ hyperparameters
    @property
    def device(self) -> torch.device:
        return self.raw_lengthscales.device

    @property
    def dtype(self) -> torch.dtype:
        return self.raw_lengthscales.dtype

    @property
    def lengthscales(self) -> torch.Tensor:
        """ℓ: (E, D)."""
        return FLOOR + nn.functional.softplus(self.raw_lengthscales)

    @property
    def signal_var(self) -> torch.Tensor:
        """α²: (E,)."""
        return FLOOR + nn.functional.softplus(self.raw_signal_var)

    @property
    def noise_var(self) -> torch.Tensor:
        """σ² = max(FLOOR + softplus(raw), ``min_noise_var``): (E,)."""
        return (FLOOR + nn.functional.softplus(self.raw_noise_var)).clamp_min(self.min_noise_var)

    @property
    def sparse(self) -> bool:
        """True when the GP is FITC on inducing inputs."""
        return self.inducing_inputs.shape[0] > 0

    @property
    def num_data(self) -> int:
        """n, the number of training points."""
        return int(self.train_inputs.shape[0])

    @torch.no_grad()
    def set_hyperparameters(self, *, lengthscales=None, signal_var=None, noise_var=None) -> None:
        """Set ℓ (E, D) or (D,) or a number, α² (E,) or a number, σ² (E,) or a number; None keeps a value."""
        for name, value, shape in (("lengthscales", lengthscales, (self.output_dim, self.input_dim)),
                                   ("signal_var", signal_var, (self.output_dim,)),
                                   ("noise_var", noise_var, (self.output_dim,))):
            if value is None:
                continue
            tensor = as_tensor(name, value, dtype=self.dtype, device=self.device)
            try:
                tensor = tensor.expand(shape)
            except RuntimeError as err:
                raise ValueError(f"{name}: expected shape {shape} (or one that broadcasts to it), "
                                 f"got {tuple(tensor.shape)}") from err
            if not bool((torch.isfinite(tensor) & (tensor > FLOOR)).all()):
                raise ValueError(f"{name}: expected finite values > {FLOOR}, got {tensor.tolist()}")
            getattr(self, f"raw_{name}").copy_(_softplus_inverse(tensor))

    # ------------------------------------------------------------------ data
    def _validated(self, inputs, targets, names: tuple[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
        x_name, y_name = names
        inputs = as_tensor(x_name, inputs, dtype=self.dtype, device=self.device).detach()
        targets = as_tensor(y_name, targets, dtype=self.dtype, device=self.device).detach()
        check_shape(x_name, inputs, ("n", self.input_dim))
        check_shape(y_name, targets, (inputs.shape[0], self.output_dim))
        n, needed = inputs.shape[0], max(2, self.input_dim)
        if n < needed:
            raise ValueError(f"{x_name}: expected at least {needed} points for a GP on D = {self.input_dim} input "
                             f"dimensions (and at least 2), got {n}")
        for name, tensor in ((x_name, inputs), (y_name, targets)):
            rows = _bad_rows(tensor)
            if rows:
                raise ValueError(f"{name}: expected finite values, got NaN/inf in rows {_rows_text(rows)}")
        return inputs, targets

    @torch.no_grad()
    def set_data(self, inputs, targets, *, inducing_inputs=None, generator: torch.Generator | None = None,
                 _names: tuple[str, str] = ("inputs", "targets")) -> None:
        """Condition on (X, Y) without optimising the hyperparameters.

        Args:
            inputs: X, (n, D). targets: Y, (n, E).
            inducing_inputs: X̄ (M, D) to make the GP FITC with these; None: FITC on a random subset of
                ``inducing`` rows of X (drawn with ``generator``) when n > ``sparse_above``, else exact.
        """
        inputs, targets = self._validated(inputs, targets, _names)
        n = inputs.shape[0]
        if inducing_inputs is not None:
            inducing_inputs = as_tensor("inducing_inputs", inducing_inputs, dtype=self.dtype, device=self.device)
            check_shape("inducing_inputs", inducing_inputs, ("M", self.input_dim))
            if inducing_inputs.shape[0] == 0 or _bad_rows(inducing_inputs):
                raise ValueError(f"inducing_inputs: expected at least one row, all finite, got "
                                 f"{tuple(inducing_inputs.shape)} with NaN/inf rows {_bad_rows(inducing_inputs)}")
            inducing_inputs = inducing_inputs.detach().clone()
        elif n > self.sparse_above:
            chosen = _random_perm(n, generator, self.device)[: min(self.inducing, n)]
            inducing_inputs = inputs[chosen].clone()
        else:
            inducing_inputs = inputs.new_zeros(0, self.input_dim)
        self.train_inputs = inputs.clone()
        self.train_targets = targets.clone()
        self.inducing_inputs = nn.Parameter(inducing_inputs)
        self._cache = None

    def _require_data(self) -> None:
        if self.num_data == 0:
            raise RuntimeError("GaussianProcess: no data yet; call fit(inputs, targets) or set_data(inputs, targets)")

    # ------------------------------------------------------------------ linear algebra
    def _cholesky(self, matrix: torch.Tensor, what: str) -> torch.Tensor:
        """L with L Lᵀ = matrix (E, k, k); a failed factorisation retries with jitter J·mean(diag) I, J = 1e-8, 1e-7, …"""
        factor, info = torch.linalg.cholesky_ex(matrix)
        if not bool((info > 0).any()):
            return factor
        scale = torch.diagonal(matrix, dim1=-2, dim2=-1).mean(-1).abs().clamp_min(FLOOR)  # (E,)
        eye = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
        failed, jitter = info > 0, JITTER_START
        while jitter <= JITTER_CAP * (1 + 1e-9):
            added = failed.to(matrix.dtype) * jitter * scale  # only the outputs that failed
            factor, info = torch.linalg.cholesky_ex(matrix + added[:, None, None] * eye)
            if not bool((info > 0).any()):
                self._jitter_used = max(self._jitter_used, jitter)
                if not self._warned_jitter:
                    self._warned_jitter = True
                    outputs = torch.nonzero(failed).flatten().tolist()
                    warnings.warn(f"GaussianProcess: {what} was not numerically positive definite for output(s) "
                                  f"{outputs}; added a jitter of {jitter:g} × its mean diagonal (said once per GP)",
                                  JitterWarning, stacklevel=3)
                return factor
            jitter *= 10
        outputs = torch.nonzero(info > 0).flatten().tolist()
        raise GPCholeskyError(f"GaussianProcess: {what} is not positive definite for output(s) {outputs} even with a "
                              f"jitter of {JITTER_CAP:g} × its mean diagonal (duplicate inputs with a tiny noise "
                              f"variance? try a larger noise_var, or fit the hyperparameters)")

    def _terms(self, with_inverse: bool) -> dict[str, torch.Tensor]:
        """The log marginal likelihood (E,), β (E, n|M) and, when asked, the kernel inverse (E, n|M, n|M).

        Differentiable w.r.t. the hyperparameters and the inducing inputs.
        """
        X, Y = self.train_inputs, self.train_targets.T  # (n, D), (E, n)
        n = X.shape[0]
        ell, alpha2, noise = self.lengthscales, self.signal_var, self.noise_var
        eye_n = None
        if not self.sparse:
            # exact: L Lᵀ = K + σ² I, β = (K + σ² I)⁻¹ y, log p = −½ yᵀβ − Σ log L_ii − n/2 log 2π
            eye_n = torch.eye(n, dtype=X.dtype, device=X.device)
            gram = se_kernel(X, X, ell, alpha2) + noise[:, None, None] * eye_n
            chol = self._cholesky(gram, "K + σ² I")
            beta = torch.cholesky_solve(Y[..., None], chol)[..., 0]
            lml = (-0.5 * (Y * beta).sum(-1) - torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
                   - 0.5 * n * _LOG_2PI)
            out = {"support": X, "beta": beta, "lml": lml}
            if with_inverse:
                out["kernel_inverse"] = torch.cholesky_inverse(chol)
            return out
        # FITC: L Lᵀ = K_mm, V = L⁻¹ K_mn, Λ = diag(K_nn − VᵀV) + σ², A = I + V Λ⁻¹ Vᵀ = L_A L_Aᵀ
        Z = self.inducing_inputs
        m = Z.shape[0]
        eye_m = torch.eye(m, dtype=X.dtype, device=X.device)
        chol_mm = self._cholesky(se_kernel(Z, Z, ell, alpha2), "K_mm (inducing inputs)")
        v = torch.linalg.solve_triangular(chol_mm, se_kernel(Z, X, ell, alpha2), upper=False)  # (E, M, n)
        lam = (alpha2[:, None] - v.square().sum(-2)).clamp_min(0.0) + noise[:, None]  # (E, n)
        a = eye_m + (v / lam[:, None, :]) @ v.transpose(-1, -2)
        chol_a = self._cholesky(a, "I + V Λ⁻¹ Vᵀ")
        c = torch.linalg.solve_triangular(chol_a, (v @ (Y / lam)[..., None]), upper=False)  # L_A⁻¹ V Λ⁻¹ y: (E, M, 1)
        # log N(y | 0, VᵀV + Λ) by Woodbury and the matrix determinant lemma
        lml = (-0.5 * (Y.square() / lam).sum(-1) + 0.5 * c.square().sum((-1, -2))
               - torch.log(torch.diagonal(chol_a, dim1=-2, dim2=-1)).sum(-1) - 0.5 * torch.log(lam).sum(-1)
               - 0.5 * n * _LOG_2PI)
        # β = K_mm⁻¹ ... = L⁻ᵀ A⁻¹ V Λ⁻¹ y = L⁻ᵀ L_A⁻ᵀ c
        inner = torch.linalg.solve_triangular(chol_a.transpose(-1, -2), c, upper=True)
        beta = torch.linalg.solve_triangular(chol_mm.transpose(-1, -2), inner, upper=True)[..., 0]
        out = {"support": Z, "beta": beta, "lml": lml}
        if with_inverse:
            # K_mm⁻¹ − (K_mm + K_mn Λ⁻¹ K_nm)⁻¹ = L⁻ᵀ (I − A⁻¹) L⁻¹
            chol_inv = torch.linalg.solve_triangular(chol_mm, eye_m.expand_as(chol_mm), upper=False)
            middle = eye_m - torch.cholesky_inverse(chol_a)
            inverse = chol_inv.transpose(-1, -2) @ middle @ chol_inv
            out["kernel_inverse"] = 0.5 * (inverse + inverse.transpose(-1, -2))
        return out

    def log_marginal_likelihood(self) -> torch.Tensor:
        """log p(y_a | X) for every output (FITC's when sparse): (E,), differentiable w.r.t. the hyperparameters."""
        self._require_data()
        return self._terms(with_inverse=False)["lml"]

    # ------------------------------------------------------------------ cached prediction
    def _cache_key(self) -> tuple:
        tensors = (self.raw_lengthscales, self.raw_signal_var, self.raw_noise_var, self.inducing_inputs,
                   self.train_inputs, self.train_targets)
        return tuple((id(t), t._version) for t in tensors)

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute the cached X (or X̄), β and kernel inverse from the current hyperparameters and data.

        Reading a cached quantity does this by itself when a parameter changed in place since.
        """
        self._require_data()
        terms = self._terms(with_inverse=True)
        self._cache = {"version": self._cache_key(), "support": terms["support"].detach(),
                       "beta": terms["beta"].detach(), "kernel_inverse": terms["kernel_inverse"].detach()}

    def _cached(self) -> dict[str, Any]:
        if self._cache is None or self._cache["version"] != self._cache_key():
            self.refresh()
        return self._cache

    @property
    def support_inputs(self) -> torch.Tensor:
        """X (n, D) for the exact GP, the inducing inputs X̄ (M, D) for FITC (detached)."""
        return self._cached()["support"]

    @property
    def beta(self) -> torch.Tensor:
        """β (E, n) = (K_a + σ_a² I)⁻¹ y_a; FITC: (E, M) = Σ_a K_mn Λ⁻¹ y_a (detached)."""
        return self._cached()["beta"]

    @property
    def kernel_inverse(self) -> torch.Tensor:
        """(K_a + σ_a² I)⁻¹ (E, n, n); FITC: K_mm⁻¹ − Σ_a (E, M, M), the matrix of the predictive variance (detached)."""
        return self._cached()["kernel_inverse"]

    def _predict(self, x: torch.Tensor, include_noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """m(x), v(x) for x (m, D) without checks: (m, E) each; differentiable w.r.t. x."""
        cache = self._cached()
        ell, alpha2 = self.lengthscales.detach(), self.signal_var.detach()
        cross = se_kernel(x, cache["support"], ell, alpha2)  # k_a(x, X): (E, m, n)
        mean = (cross * cache["beta"][:, None, :]).sum(-1).T  # k_a(x, X) β_a
        reduce = ((cross @ cache["kernel_inverse"]) * cross).sum(-1).T  # k_a(x, X) K_inv k_a(X, x)
        var = (alpha2 - reduce).clamp_min(0.0)
        if include_noise:
            var = var + self.noise_var.detach()
        return mean, var

    def posterior(self, x, *, include_noise: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """m_a(x) = k_a(x, X) β_a and v_a(x) = α_a² − k_a(x, X) K_inv,a k_a(X, x) (+ σ_a² with ``include_noise``).

        Args:
            x: (m, D) or (..., D).
        Returns:
            mean (..., E), var (..., E); differentiable w.r.t. x (not the hyperparameters: see
            :meth:`log_marginal_likelihood` for that).
        """
        self._require_data()
        x = as_tensor("x", x, dtype=self.dtype, device=self.device)
        if x.dim() == 0 or x.shape[-1] != self.input_dim:
            raise ValueError(f"x: expected shape (m, {self.input_dim}), got {tuple(x.shape)}")
        lead = x.shape[:-1]
        mean, var = self._predict(x.reshape(-1, self.input_dim), include_noise)
        return mean.reshape(*lead, self.output_dim), var.reshape(*lead, self.output_dim)

    def moments(self, mean, cov, *, include_noise: bool = False, check: bool = True) -> PredictionMoments:
        """Exact moments of f(x) for x ~ N(mean, cov) (moment matching), with the cached X, β, kernel inverse.

        E[f_a] = β_aᵀ q_a, Cov[f], Cov[x, f]: see :func:`~mbrl_course.models.moment_matching.gp_moments_at_gaussian_input`.

        Args:
            mean: μ, (..., D). cov: Σ, (..., D, D), symmetric positive semi-definite.
            include_noise: add σ_a² to the diagonal of the covariance (the moments of y instead of f).
            check: refuse NaN/inf and a cov that is not symmetric PSD (within 1e-8 relative). Each check waits
                for the device; a rollout loop that builds cov itself may pass False after its first step.
        Returns:
            :class:`~mbrl_course.models.moment_matching.PredictionMoments`; differentiable w.r.t. mean and cov.
        """
        self._require_data()
        mean = as_tensor("mean", mean, dtype=self.dtype, device=self.device)
        cov = as_tensor("cov", cov, dtype=self.dtype, device=self.device)
        D = self.input_dim
        if mean.dim() == 0 or mean.shape[-1] != D or cov.shape != (*mean.shape, D):
            raise ValueError(f"mean, cov: expected (..., {D}) and (..., {D}, {D}) with the same leading shape, got "
                             f"{tuple(mean.shape)} and {tuple(cov.shape)}")
        if check:
            self._check_gaussian(mean, cov)
        cache = self._cached()
        out = gp_moments_at_gaussian_input(mean, cov, cache["support"], cache["beta"], self.lengthscales.detach(),
                                           self.signal_var.detach(), kernel_inverse=cache["kernel_inverse"])
        if include_noise:
            out = replace(out, cov=out.cov + torch.diag_embed(self.noise_var.detach().expand_as(out.mean)))
        return out

    @staticmethod
    @torch.no_grad()
    def _check_gaussian(mean: torch.Tensor, cov: torch.Tensor) -> None:
        """Refuse NaN/inf, and a cov that is not symmetric or has an eigenvalue below −1e-8 × its largest entry."""
        if not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(cov).all())):
            raise ValueError("mean, cov: expected finite values, got NaN/inf")
        scale = cov.abs().amax(dim=(-1, -2), keepdim=True).clamp_min(1e-300)
        if not bool(((cov - cov.transpose(-1, -2)).abs() <= 1e-8 * scale).all()):
            raise ValueError("cov: expected a symmetric matrix (within 1e-8 relative), got an asymmetric one")
        lowest = torch.linalg.eigvalsh(cov)[..., 0]
        if not bool((lowest >= -1e-8 * scale[..., 0, 0]).all()):
            raise ValueError(f"cov: expected a positive semi-definite matrix, got one with an eigenvalue of "
                             f"{float(lowest.min()):.3g}")

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def initialize(self) -> None:
        """PILCO's data-driven start: ℓ_ad = std(X_d), α_a² = Var(y_a), σ_a² = α_a² / 100 (SNR 10)."""
        self._require_data()
        spread = self.train_inputs.std(0).clamp_min(1e-3)  # a constant input column gets ℓ = 1e-3
        target_var = self.train_targets.var(0).clamp_min(1e-6)
        self.set_hyperparameters(lengthscales=spread.expand(self.output_dim, -1), signal_var=target_var,
                                 noise_var=target_var / 100)

    def hyperparameter_penalty(self) -> torch.Tensor:
        """PILCO's curb (hypCurb): Σ_d ((log ℓ_ad − log s_d) / log 100)^30 + ((log α_a − log σ_a) / log 500)^30: (E,).

        s_d is the spread (std) of input d in the data; nearly 0 for ℓ within [s/100, 100 s] and an SNR
        within [1/500, 500], steep outside: it keeps the fit away from the degenerate optima (a length-scale
        far beyond the data, a vanishing noise) that make the kernel matrix ill-conditioned.
        """
        spread = self.train_inputs.std(0).clamp_min(1e-3)
        p = PENALTY_POWER
        lengths = ((torch.log(self.lengthscales) - torch.log(spread)) / math.log(LENGTHSCALE_RATIO)).pow(p).sum(-1)
        snr = (0.5 * (torch.log(self.signal_var) - torch.log(self.noise_var)) / math.log(SNR_LIMIT)).pow(p)
        return lengths + snr

    def fit(self, inputs, targets, *, iterations: int = 100, penalty: bool = True, warm_start: bool = False,
            progress: bool = False, generator: torch.Generator | None = None,
            _names: tuple[str, str] = ("inputs", "targets")) -> GPFitReport:
        """Set the data and maximise Σ_a log p(y_a | X) − penalty over ℓ, α², σ² (and X̄ for FITC) by L-BFGS.

        Args:
            inputs: X (n, D). targets: Y (n, E).
            iterations: at most this many L-BFGS iterations (each a strong-Wolfe line search).
            penalty: subtract PILCO's :meth:`hyperparameter_penalty` (default on: it keeps the kernel matrices
                well conditioned and the length-scales on the data's scale).
            warm_start: start from the current hyperparameters instead of :meth:`initialize`'s.
            progress: a tqdm bar over iterations.
            generator: draws FITC's initial inducing inputs (a random subset of X).
        Returns:
            a :class:`GPFitReport`. The caches (β, kernel inverse) are refreshed for the fitted values.
        """
        iterations = check_positive_int("iterations", iterations)
        self.set_data(inputs, targets, generator=generator, _names=_names)
        if not warm_start:
            self.initialize()
        n = self.num_data
        params = [self.raw_lengthscales, self.raw_signal_var, self.raw_noise_var]
        if self.sparse:
            params.append(self.inducing_inputs)
        # one L-BFGS iteration per step() call, so that the likelihood is recorded (and shown) per iteration
        optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=1, max_eval=25, history_size=50,
                                      line_search_fn="strong_wolfe")
        self._jitter_used = 0.0
        seen: list[float] = []  # Σ_a log p(y_a | X) at every evaluation

        def objective() -> torch.Tensor:
            """−(Σ_a log p(y_a | X) − penalty_a) / n, per data point (its scale suits L-BFGS' tolerances)."""
            try:
                lml = self.log_marginal_likelihood()
            except GPCholeskyError as err:
                raise _StopFit(str(err)) from err
            total = lml.sum()
            if penalty:
                total = total - self.hyperparameter_penalty().sum()
            if not bool(torch.isfinite(total)):
                raise _StopFit(f"the objective became {float(total)}")
            seen.append(float(lml.detach().sum()))
            return -total / n

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss = objective()
            loss.backward()
            return loss

        report = GPFitReport(log_likelihood=[], iterations=0, sparse=self.sparse, jitter=0.0)
        bar = tqdm(range(iterations), desc="fit GP", disable=not progress, leave=False)
        previous = None
        for _ in bar:
            snapshot = [p.detach().clone() for p in params]
            start = len(seen)
            steps_before = optimizer.state[params[0]].get("n_iter", 0)
            try:
                loss = float(optimizer.step(closure).detach())
            except _StopFit as err:
                with torch.no_grad():
                    for p, saved in zip(params, snapshot):
                        p.copy_(saved)
                report.message = f"stopped in iteration {report.iterations + 1}: {err}; kept the previous values"
                break
            if optimizer.state[params[0]].get("n_iter", 0) == steps_before:
                report.converged = True  # L-BFGS found the gradient below its tolerance: no step taken
                break
            report.log_likelihood.append(seen[start])  # the value this iteration started from
            report.iterations += 1
            if previous is not None and abs(previous - loss) <= 1e-10 * max(1.0, abs(loss)):
                report.converged = True  # the objective no longer changes
                break
            previous = loss
            bar.set_postfix(log_likelihood=f"{seen[start]:.4g}")
        bar.close()
        with torch.no_grad():
            report.log_likelihood.append(float(self.log_marginal_likelihood().sum()))
        report.jitter = self._jitter_used
        self.refresh()
        return report

    # ------------------------------------------------------------------ checkpoints
    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Resize the data and the inducing inputs to the saved ones before the usual copy."""
        for name in ("train_inputs", "train_targets", "inducing_inputs"):
            saved = state_dict.get(prefix + name)
            if saved is None:
                continue
            width = self.input_dim if name != "train_targets" else self.output_dim
            if saved.dim() != 2 or saved.shape[1] != width:
                raise ValueError(f"state_dict: {prefix + name} has shape {tuple(saved.shape)}, this GP expects "
                                 f"(*, {width})")
            fresh = torch.zeros(saved.shape, dtype=self.dtype, device=self.device)
            if name == "inducing_inputs":
                self.inducing_inputs = nn.Parameter(fresh)
            else:
                setattr(self, name, fresh)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        self._cache = None

    def extra_repr(self) -> str:
        kind = f"FITC with M={self.inducing_inputs.shape[0]}" if self.sparse else "exact"
        return f"input_dim={self.input_dim}, output_dim={self.output_dim}, n={self.num_data}, {kind}"


# ---------------------------------------------------------------------------------------------- dynamics
class GPDynamics(nn.Module):
    """f_ψ of PILCO: z' = z + Δz, Δz ~ GP((i, u)), behind the model contract (:class:`~mbrl_course.models.DynamicsModel`).

    The GP's inputs are the observation and the action, (i, u) (i holds cos θ, sin θ of every angle:
    PILCO's augmented input); its targets are the state changes Δz = z' − z of the Gaussian state z
    (:func:`state_from_obs`), angle differences wrapped to (−π, π].

    Args:
        obs_dim: O. act_dim: A.
        angles: the observation indices of the cos entries of (cos θ, sin θ) pairs (CartPoleSwingUp: (2,)).
        sparse_above, inducing, min_noise_var: of the :class:`GaussianProcess`.
        iterations: L-BFGS iterations of :meth:`fit` (an option of ``fit`` overrides it).
        device, dtype: of the GP.
    """

    predict_reward = False  # the reward comes from the env's reward function (PILCO: the saturating cost)

    def __init__(self, obs_dim: int, act_dim: int, *, angles: Sequence[int] = (), sparse_above: int = 300,
                 inducing: int = 200, min_noise_var: float = 0.0, iterations: int = 100,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.act_dim = check_positive_int("act_dim", act_dim)
        self.angles = _angles(angles)
        _layout(self.obs_dim, self.angles)  # validates the angles against obs_dim
        self.state_dim = self.obs_dim - len(self.angles)
        self.iterations = check_positive_int("iterations", iterations)
        self.gp = GaussianProcess(self.obs_dim + self.act_dim, self.state_dim, sparse_above=sparse_above,
                                  inducing=inducing, min_noise_var=min_noise_var, dtype=dtype, device=device)

    @property
    def device(self) -> torch.device:
        return self.gp.device

    @property
    def dtype(self) -> torch.dtype:
        return self.gp.dtype

    def training_pairs(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """GP inputs (i, u) (B, O + A) and targets Δz = z' − z (B, S), angle differences wrapped to (−π, π]."""
        z, z_next = state_from_obs(obs, self.angles), state_from_obs(next_obs, self.angles)
        delta = z_next - z
        idx = list(state_angle_indices(self.angles))
        if idx:
            delta[..., idx] = wrap_angle(delta[..., idx])
        return torch.cat([obs, action], dim=-1), delta

    def fit(self, data, *, generator: torch.Generator | None = None, progress: bool = False,
            **options) -> GPFitReport:
        """Fit the GP on every transition of D_real (no minibatches): ψ := argmax log p(Δz | (i, u)).

        Args:
            data: a :class:`~mbrl_course.data.ReplayBuffer` (or EpisodeBuffer) of (i, u, g, i') transitions.
            options: of :meth:`GaussianProcess.fit` (``iterations``, ``penalty``, ``warm_start``).
        Returns:
            the GP's :class:`GPFitReport`.
        """
        if getattr(data, "obs_dim", None) != self.obs_dim or getattr(data, "act_dim", None) != self.act_dim:
            raise ValueError(f"D_real: holds obs_dim={getattr(data, 'obs_dim', None)}, "
                             f"act_dim={getattr(data, 'act_dim', None)}; the model expects obs_dim={self.obs_dim}, "
                             f"act_dim={self.act_dim}")
        batch = data.all().to(self.device, self.dtype)
        needed = max(2, self.gp.input_dim)
        if len(batch) < needed:
            raise ValueError(f"D_real: expected at least {needed} transitions for a GP on (obs, action) of "
                             f"{self.gp.input_dim} dimensions, got {len(batch)}")
        for name in ("obs", "action", "next_obs"):
            rows = _bad_rows(getattr(batch, name))
            if rows:
                raise ValueError(f"D_real: expected finite transitions, got NaN/inf in {name} of transitions "
                                 f"{_rows_text(rows)} (oldest first)")
        inputs, targets = self.training_pairs(batch.obs, batch.action, batch.next_obs)
        options.setdefault("iterations", self.iterations)
        return self.gp.fit(inputs, targets, generator=generator, progress=progress,
                           _names=("D_real (obs, action)", "D_real (state change)"), **options)

    def _inputs(self, obs, action) -> tuple[torch.Tensor, torch.Tensor]:
        obs = as_tensor("obs", obs, dtype=self.dtype, device=self.device)
        action = as_tensor("action", action, dtype=self.dtype, device=self.device)
        check_shape("obs", obs, ("B", self.obs_dim))
        check_shape("action", action, (obs.shape[0], self.act_dim))
        return obs, action

    def next_state_distribution(self, obs, action) -> torch.distributions.Independent:
        """p(i' | i, u) per entry: z' ~ N(z + m(i, u), diag(v(i, u) + σ²)), pushed through φ with exact moments.

        An angle θ' ~ N(m, v) gives E[cos θ'] = e^{−v/2} cos m, Var[cos θ'] = ½(1 + e^{−2v} cos 2m) − E[cos θ']²
        (and likewise for sin); the other entries are Gaussian already.

        Args:
            obs: (B, O). action: (B, A).
        Returns:
            ``Independent(Normal(mean, std), 1)``, event shape (O,), with these per-entry moments.
        """
        obs, action = self._inputs(obs, action)
        with torch.no_grad():
            mean, var = self.gp.posterior(torch.cat([obs, action], dim=-1), include_noise=True)
            mean_obs, var_obs = _obs_moments(state_from_obs(obs, self.angles) + mean, var, self.angles)
            std = var_obs.sqrt().clamp_min(torch.finfo(self.dtype).tiny)
        return torch.distributions.Independent(torch.distributions.Normal(mean_obs, std), 1)

    def propagator(self, *, generator: torch.Generator | None = None, propagation: str = "sample",
                   **_ignored) -> Propagator:
        """Rows step by z' = z + m(i, u) + √(v(i, u) + σ²) ε, ε ~ N(0, I) from ``generator`` (``"sample"``), or
        z' = z + m(i, u) (``"mean"``, deterministic); the ensembles' "ts1"/"ts_inf" mean "sample" and
        "expectation" means "mean", so one planner config serves every model. Other options are ignored."""
        check_choice("propagation", propagation, PROPAGATIONS_GP)
        return _GPPropagator(self, generator, sample=propagation in ("sample", "ts1", "ts_inf"))

    def get_extra_state(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "angles": self.angles}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        mine = self.get_extra_state()
        if {k: tuple(v) if k == "angles" else v for k, v in state.items()} != mine:
            raise ValueError(f"state_dict: saved from a GPDynamics with {state}, this one has {mine}")

    def extra_repr(self) -> str:
        return f"obs_dim={self.obs_dim}, act_dim={self.act_dim}, angles={self.angles}"


class _GPPropagator(Propagator):
    """i'_m = φ(z_m + Δz_m), Δz_m drawn from the GP's marginal predictive (or its mean) row by row."""

    def __init__(self, model: GPDynamics, generator: torch.Generator | None, sample: bool):
        self.model = model
        self.generator = generator
        self.sample = sample
        self.deterministic = not sample

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, None]:
        model = self.model
        mean, var = model.gp._predict(torch.cat([obs, action], dim=-1), include_noise=self.sample)
        delta = mean
        if self.sample:
            delta = mean + var.sqrt() * _standard_normal(tuple(mean.shape), self.generator, mean)
        state = state_from_obs(obs, model.angles) + delta
        return obs_from_state(state, model.angles), None
