"""The linear-Gaussian state-space model's parameters θ = {m_0, S_0, E_t, F_t, C, D, B}: one container.

Every linear-Gaussian function of the package takes a :class:`LinearGaussianSSM` (as probml's
dynamax passes ``ParamsLGSSM``): ``kalman_filter(params, observations)``, ``rts_smoother(params,
observations)``, ``predict(params, m_T, S_T, K)``. The container checks its parameters once, when it
is built; a filter then only checks the data of its call against it.

The calls of before, with the parameters as separate arguments,
``kalman_filter(observations, initial_mean, initial_cov, transition_matrix, transition_cov,
emission_matrix, emission_cov, controls=None, control_matrix=None)``, keep working: they are
converted to the container here, in :func:`accepts_separate_arguments`, and nowhere else.

Covariances for learning are parameterised through their log-Cholesky factor
(:func:`positive_definite`); the learnable model is :class:`~mbrl_course.filters.LinearGaussianModel`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch

from mbrl_course._checks import as_tensor, check_finite, check_positive_int
from mbrl_course.filters._gaussian import matvec, psd_factor
from mbrl_course.filters._validate import (
    SUPPORTED_DTYPES,
    broadcast_batch,
    check_covariance,
    control_offsets,
    like,
    matrix,
    observations_tensor,
    vector,
)

if TYPE_CHECKING:
    from mbrl_course.filters.kalman import KalmanFilterResult, PredictionResult, SmootherResult

SYMBOLS = {
    "initial_mean": "initial_mean (m_0)",
    "initial_cov": "initial_cov (S_0)",
    "transition_matrix": "transition_matrix (E_t)",
    "transition_cov": "transition_cov (F_t)",
    "emission_matrix": "emission_matrix (C)",
    "emission_cov": "emission_cov (D)",
    "control_matrix": "control_matrix (B)",
}
"""each field's name in an error: the argument and the slide's symbol"""
STEP_MATRICES = ("transition_matrix", "transition_cov", "emission_matrix", "emission_cov", "control_matrix")
"""the fields that may vary in time: fixed ``(r, c)`` or ``(..., T, r, c)``"""


def positive_definite(unconstrained: torch.Tensor) -> torch.Tensor:
    """Σ = L Lᵀ with L = tril(X, -1) + diag(exp(diag X)): any ``(..., n, n)`` X gives an SPD Σ."""
    L = torch.tril(unconstrained, -1) + torch.diag_embed(torch.diagonal(unconstrained, dim1=-2, dim2=-1).exp())
    return L @ L.mT


def positive_definite_inverse(cov: torch.Tensor) -> torch.Tensor:
    """The X with ``positive_definite(X) == cov`` for symmetric positive-definite ``cov: (..., n, n)``."""
    L = torch.linalg.cholesky(0.5 * (cov + cov.mT))
    return torch.tril(L, -1) + torch.diag_embed(torch.diagonal(L, dim1=-2, dim2=-1).log())


def _initial_mean(value) -> torch.Tensor:
    m0 = as_tensor(SYMBOLS["initial_mean"], value)
    if not m0.is_floating_point():
        m0 = m0.to(torch.get_default_dtype())
    if m0.dtype not in SUPPORTED_DTYPES:
        raise TypeError(f"initial_mean (m_0): expected dtype float32 or float64, got {m0.dtype}")
    if m0.ndim < 1 or m0.shape[-1] == 0:
        raise ValueError(f"initial_mean (m_0): expected shape (..., dx) with dx >= 1, got {tuple(m0.shape)}")
    check_finite(SYMBOLS["initial_mean"], m0)
    return m0


def _step_matrix(name: str, x: torch.Tensor, rows: int | None, cols: int | None) -> torch.Tensor:
    """Check a fixed ``(rows, cols)`` or time-varying ``(..., T, rows, cols)`` matrix (None: any size)."""
    if x.ndim < 2 or (rows is not None and x.shape[-2] != rows) or (cols is not None and x.shape[-1] != cols):
        want = f"({'r' if rows is None else rows}, {'c' if cols is None else cols})"
        raise ValueError(f"{SYMBOLS[name]}: expected shape {want} or (..., T, {want[1:-1]}), got {tuple(x.shape)}")
    return x


@dataclass(frozen=True)
class LinearGaussianSSM:
    """p(s_0) = N(m_0, S_0),  p(s_t | s_{t-1}, u_t) = N(E_t s_{t-1} + B u_t, F_t),  p(y_t | s_t) = N(C s_t, D).

    The parameters θ of the slide's linear-Gaussian state-space model, checked once when built:
    every field has ``initial_mean``'s dtype and device, shapes fit (dx from m_0, dy from D, du
    from B), values are finite, S_0 and F_t are symmetric positive semi-definite and D symmetric
    positive definite, and batch dimensions broadcast. Errors name the field and its symbol.

    Matrices are fixed, e.g. ``(dx, dx)``, or time-varying ``(..., T, dx, dx)`` (a time axis of
    size 1 is shared by all steps); leading batch dimensions broadcast against each other and
    against the data. Non-tensor values (lists, arrays, numbers) take ``initial_mean``'s dtype.
    """

    initial_mean: torch.Tensor
    """m_0: (..., dx)"""
    initial_cov: torch.Tensor
    """S_0: (..., dx, dx), symmetric positive semi-definite"""
    transition_matrix: torch.Tensor
    """E_t: (dx, dx) or (..., T, dx, dx)"""
    transition_cov: torch.Tensor
    """F_t: (dx, dx) or (..., T, dx, dx), symmetric positive semi-definite"""
    emission_matrix: torch.Tensor
    """C: (dy, dx) or (..., T, dy, dx)"""
    emission_cov: torch.Tensor
    """D: (dy, dy) or (..., T, dy, dy), symmetric positive definite"""
    control_matrix: torch.Tensor | None = None
    """B: (dx, du) or (..., T, dx, du); None for a model without controls"""

    def __post_init__(self) -> None:
        m0 = _initial_mean(self.initial_mean)
        values = {"initial_mean": m0}
        for name in SYMBOLS:
            value = getattr(self, name)
            if name == "initial_mean" or (name == "control_matrix" and value is None):
                continue
            values[name] = like(SYMBOLS[name], value, m0, "initial_mean's")
        dx = m0.shape[-1]
        if values["initial_cov"].ndim < 2 or values["initial_cov"].shape[-2:] != (dx, dx):
            raise ValueError(f"initial_cov (S_0): expected shape (..., {dx}, {dx}), got {tuple(values['initial_cov'].shape)}")
        _step_matrix("transition_matrix", values["transition_matrix"], dx, dx)
        _step_matrix("transition_cov", values["transition_cov"], dx, dx)
        D = values["emission_cov"]
        if D.ndim < 2 or D.shape[-1] != D.shape[-2] or D.shape[-1] == 0:
            raise ValueError(f"emission_cov (D): expected a square shape (dy, dy) or (..., T, dy, dy) with dy >= 1, "
                             f"got {tuple(D.shape)}")
        _step_matrix("emission_matrix", values["emission_matrix"], D.shape[-1], dx)
        if "control_matrix" in values:
            _step_matrix("control_matrix", values["control_matrix"], dx, None)
        steps = {}
        for name in STEP_MATRICES:
            if name in values and values[name].ndim > 2 and values[name].shape[-3] != 1:
                steps.setdefault(values[name].shape[-3], name)
        if len(steps) > 1:
            (t_a, a), (t_b, b) = list(steps.items())[:2]
            raise ValueError(f"{SYMBOLS[b]}: has a time axis of size {t_b}, but {SYMBOLS[a]} has one of size {t_a}")
        batch = broadcast_batch([(SYMBOLS["initial_mean"], m0.shape[:-1]),
                                 (SYMBOLS["initial_cov"], values["initial_cov"].shape[:-2])]
                                + [(SYMBOLS[n], values[n].shape[:-3]) for n in STEP_MATRICES if n in values])
        check_covariance(SYMBOLS["initial_cov"], values["initial_cov"], definite=False)
        check_covariance(SYMBOLS["transition_cov"], values["transition_cov"], definite=False)
        check_covariance(SYMBOLS["emission_cov"], values["emission_cov"], definite=True)
        for name, value in values.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_batch_shape", batch)
        object.__setattr__(self, "_num_steps", next(iter(steps), None))

    @classmethod
    def _unchecked(cls, batch_shape: torch.Size, num_steps: int | None, **values) -> LinearGaussianSSM:
        """A container from values derived from a checked one (no second check)."""
        obj = object.__new__(cls)
        for f in fields(cls):
            object.__setattr__(obj, f.name, values.get(f.name))
        object.__setattr__(obj, "_batch_shape", batch_shape)
        object.__setattr__(obj, "_num_steps", num_steps)
        return obj

    @property
    def state_dim(self) -> int:
        """dx, the size of s_t."""
        return self.initial_mean.shape[-1]

    @property
    def obs_dim(self) -> int:
        """dy, the size of y_t."""
        return self.emission_cov.shape[-1]

    @property
    def control_dim(self) -> int | None:
        """du, the size of u_t (None without a control matrix)."""
        return None if self.control_matrix is None else self.control_matrix.shape[-1]

    @property
    def batch_shape(self) -> torch.Size:
        """The broadcast batch dimensions of all fields."""
        return self._batch_shape

    @property
    def num_steps(self) -> int | None:
        """T of the time-varying fields (a time axis longer than 1); None when all are fixed."""
        return self._num_steps

    def for_steps(self, num_steps: int) -> LinearGaussianSSM:
        """This model over ``num_steps`` steps: every matrix ``(..., T|1, r, c)``, covariances symmetrised.

        A time-varying field must have a time axis of size ``num_steps`` (or 1).
        """
        if self.num_steps is not None and self.num_steps != num_steps:
            name = next(n for n in STEP_MATRICES if getattr(self, n) is not None and getattr(self, n).ndim > 2
                        and getattr(self, n).shape[-3] == self.num_steps)
            x = getattr(self, name)
            raise ValueError(
                f"{SYMBOLS[name]}: expected shape {tuple(x.shape[-2:])} or (..., T, {x.shape[-2]}, {x.shape[-1]}) "
                f"with T = {num_steps} (or 1, shared by all steps) on the time axis, got {tuple(x.shape)}; for a "
                f"batch of fixed matrices add a time axis of size 1 with .unsqueeze(-3)"
            )
        values = {"initial_mean": self.initial_mean, "initial_cov": 0.5 * (self.initial_cov + self.initial_cov.mT)}
        for name in STEP_MATRICES:
            x = getattr(self, name)
            if x is not None:
                x = x.unsqueeze(0) if x.ndim == 2 else x
                values[name] = 0.5 * (x + x.mT) if name.endswith("_cov") else x
        return LinearGaussianSSM._unchecked(self.batch_shape, self.num_steps, **values)

    def sample(
        self,
        num_steps: int,
        sample_shape: Sequence[int] | int = (),
        controls: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling: s_0 ~ N(m_0, S_0), s_t ~ N(E_t s_{t-1} + B u_t, F_t), y_t ~ N(C s_t, D).

        Returns ``(states: (*sample_shape, ..., T, dx), observations: (*sample_shape, ..., T, dy))``,
        the states S_{1:T} (s_0 is drawn but not returned). ``controls: (..., T, du)``.
        """
        T = check_positive_int("num_steps", num_steps)
        shape = torch.Size((sample_shape,) if isinstance(sample_shape, int) else sample_shape)
        model = self.for_steps(T)
        ref = self.initial_mean
        offsets = control_offsets(model, controls, T)

        def noise(cov_factor: torch.Tensor) -> torch.Tensor:
            eps = torch.randn(shape + self.batch_shape + cov_factor.shape[-1:], generator=generator,
                              dtype=ref.dtype, device=ref.device)
            return matvec(cov_factor, eps)

        def at(x: torch.Tensor, t: int) -> torch.Tensor:
            return x[..., 0 if x.shape[-3] == 1 else t, :, :]

        s = self.initial_mean + noise(psd_factor(self.initial_cov))
        F_factor, D_factor = psd_factor(model.transition_cov), psd_factor(model.emission_cov)
        states, observations = [], []
        for t in range(T):
            s = matvec(at(model.transition_matrix, t), s)
            if offsets is not None:
                s = s + offsets[..., t, :]
            s = s + noise(at(F_factor, t))
            y = matvec(at(model.emission_matrix, t), s) + noise(at(D_factor, t))
            states.append(s)
            observations.append(y)
        return torch.stack(states, -2), torch.stack(observations, -2)

    # The filters import this module, so these thin methods import them when called.
    def filter(self, observations: torch.Tensor, controls: torch.Tensor | None = None,
               parallel: bool | None = None) -> KalmanFilterResult:
        """:func:`~mbrl_course.filters.kalman_filter` on this model (``parallel``: None lets it choose)."""
        from mbrl_course.filters.kalman import kalman_filter, method_from_parallel

        return kalman_filter(self, observations, controls, method=method_from_parallel(parallel))

    def smooth(self, observations: torch.Tensor, controls: torch.Tensor | None = None,
               parallel: bool = False) -> SmootherResult:
        """The RTS smoother p(s_t | Y_{1:T}) on this model (``parallel`` picks the associative-scan version)."""
        from mbrl_course.filters.kalman import rts_smoother
        from mbrl_course.filters.parallel import parallel_rts_smoother

        return (parallel_rts_smoother if parallel else rts_smoother)(self, observations, controls)

    def log_likelihood(self, observations: torch.Tensor, controls: torch.Tensor | None = None,
                       parallel: bool | None = None) -> torch.Tensor:
        """log p(Y_{1:T}) = Σ_t log p(y_t | Y_{1:t-1}): (...)."""
        return self.filter(observations, controls, parallel).log_likelihood

    def predict(self, filtered: KalmanFilterResult, num_steps: int,
                controls: torch.Tensor | None = None) -> PredictionResult:
        """p(s_{T+k} | Y_{1:T}) and p(y_{T+k} | Y_{1:T}), k = 1..num_steps, from a filter result.

        Uses the model's fixed matrices (for time-varying ones, call :func:`~mbrl_course.filters.predict`
        with a model whose matrices cover the future steps).
        """
        from mbrl_course.filters.kalman import predict

        for name in ("transition_matrix", "transition_cov", "emission_matrix", "emission_cov"):
            if getattr(self, name).ndim != 2:
                raise ValueError(f"{name}: LinearGaussianSSM.predict needs fixed matrices; call filters.predict "
                                 "with a model of the future time-varying ones")
        return predict(self, filtered.filtered_means[..., -1, :], filtered.filtered_covs[..., -1, :, :],
                       num_steps, controls)


# ------------------------------------------------------------------ the calls with separate arguments


def _from_separate(reference: torch.Tensor, values: dict) -> LinearGaussianSSM:
    """The container from separately passed parameters; non-tensors take ``reference``'s dtype and device."""
    if (values.get("controls") is None) != (values.get("control_matrix") is None):
        given, missing = ("controls", "control_matrix") if values.get("controls") is not None else (
            "control_matrix", "controls")
        raise ValueError(f"{missing}: required when {given} is given (the control term B u_t needs both)")
    converted = {}
    for name in SYMBOLS:
        value = values.get(name)
        if value is not None and not isinstance(value, torch.Tensor):
            value = as_tensor(SYMBOLS[name], value, dtype=reference.dtype, device=reference.device)
        converted[name] = value
    return LinearGaussianSSM(**converted)


def _filter_call(values: dict) -> tuple[LinearGaussianSSM, dict]:
    y = observations_tensor(values["observations"])
    return _from_separate(y, values), {"observations": y, "controls": values["controls"]}


def _predict_call(values: dict) -> tuple[LinearGaussianSSM, dict]:
    m = values["filtered_mean"]
    ref = m if isinstance(m, torch.Tensor) and m.is_floating_point() else as_tensor("filtered_mean (m_T)", m)
    m = vector("filtered_mean (m_T)", m, None, ref)
    S = matrix("filtered_cov (S_T)", values["filtered_cov"], m.shape[-1], m.shape[-1], ref)
    check_covariance("filtered_cov (S_T)", S, definite=False)  # before the container calls it initial_cov
    params = _from_separate(ref, {**values, "initial_mean": m, "initial_cov": S})
    return params, {"filtered_mean": m, "filtered_cov": S, "num_steps": values["num_steps"],
                    "controls": values["controls"]}


FILTER_ARGUMENTS = ("observations", "initial_mean", "initial_cov", "transition_matrix", "transition_cov",
                    "emission_matrix", "emission_cov", "controls", "control_matrix")
"""the separate arguments of kalman_filter, rts_smoother and their parallel versions, in order"""
PREDICT_ARGUMENTS = ("filtered_mean", "filtered_cov", "transition_matrix", "transition_cov", "emission_matrix",
                     "emission_cov", "num_steps", "controls", "control_matrix")
"""the separate arguments of predict, in order"""
_SEPARATE = {FILTER_ARGUMENTS: _filter_call, PREDICT_ARGUMENTS: _predict_call}


def accepts_separate_arguments(names: tuple[str, ...] = FILTER_ARGUMENTS) -> Callable[[Callable], Callable]:
    """Let ``fn(params: LinearGaussianSSM, ...)`` also be called with the parameters as separate arguments.

    ``names`` is the old signature (:data:`FILTER_ARGUMENTS` or :data:`PREDICT_ARGUMENTS`; the last two,
    ``controls`` and ``control_matrix``, optional). A call whose first argument (or ``params=``) is a
    :class:`LinearGaussianSSM` goes straight to ``fn``; any other call is bound to the old signature,
    its parameters packed into the container (checked there) and passed on; other keywords (``method``)
    pass through unchanged.
    """
    convert = _SEPARATE[names]
    signature = inspect.Signature([
        inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=None if i >= len(names) - 2 else inspect.Parameter.empty)
        for i, n in enumerate(names)
    ])

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if (args and isinstance(args[0], LinearGaussianSSM)) or "params" in kwargs:
                return fn(*args, **kwargs)
            separate = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            try:
                bound = signature.bind(*args, **separate)
            except TypeError as err:
                raise TypeError(
                    f"{fn.__name__}: expected a LinearGaussianSSM as the first argument, or the separate "
                    f"arguments ({', '.join(names)}): {err}"
                ) from None
            bound.apply_defaults()
            params, call = convert(bound.arguments)
            return fn(params, **call, **kwargs)

        return wrapper

    return decorate


__all__ = ["LinearGaussianSSM", "accepts_separate_arguments", "positive_definite", "positive_definite_inverse"]
