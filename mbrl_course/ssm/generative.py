"""The generative model p_θ(s_{0:T}, Y_{1:T}) of a variational state-space model.

The slide's model, with an optional action u_t in the transition::

    p(s_0)                  = N(s_0 | m_0, S_0)
    p(s_t | s_{t-1}, u_t, θ) = N(s_t | f_θ(s_{t-1}, u_t), F)        t = 1..T
    p(y_t | s_t)            = N(y_t | g_θ(s_t), D)   or   Bernoulli(y_t | sigmoid(g_θ(s_t)))

- :class:`InitialState` p(s_0): learnable m_0 and a full S_0;
- :class:`GaussianTransition` p(s_t | s_{t-1}, u_t, θ): f_θ linear, E s_{t-1} + B u_t + b, or an MLP in
  residual form, s_{t-1} + MLP(s_{t-1}, u_t); a full, state-independent covariance F;
- :class:`GaussianEmission` p(y_t | s_t): g_θ linear, C s_t + c, or an MLP; a full covariance D;
- :class:`BernoulliEmission` p(y_t | s_t) for binary images (flattened to dy pixels): logits from an MLP;
- :class:`GenerativeModel` the three together; :meth:`GenerativeModel.from_linear_gaussian` plugs in a
  :class:`~mbrl_course.filters.LinearGaussianSSM` exactly (E, F, C, D, B, m_0, S_0 copied).

Covariances are stored as their log-Cholesky factor (as in :class:`~mbrl_course.filters.LinearGaussianModel`),
so every value of the parameters is a valid covariance. Full rather than diagonal: the linear-Gaussian
truth, which the tests plug in, has correlated noise.

Shapes: states ``(..., dx)``, observations ``(..., dy)``, controls ``(..., du)``; leading dimensions
(samples N, sequences B, time T) broadcast. :func:`check_sequences` checks a batch of sequences once at
the public entry points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf
from torch import nn

from mbrl_course._checks import check_choice, check_floating, check_positive_int
from mbrl_course.filters._gaussian import matvec
from mbrl_course.filters.params import LinearGaussianSSM, positive_definite_inverse
from mbrl_course.ssm._gaussian import cholesky_from_unconstrained, log_prob, rsample

MEANS = ("linear", "mlp")


def mlp(in_dim: int, out_dim: int, hidden_sizes: Sequence[int], activation: type[nn.Module] = nn.Tanh) -> nn.Sequential:
    """in_dim -> hidden_sizes (with ``activation``) -> out_dim, linear output."""
    layers: list[nn.Module] = []
    last = in_dim
    for h in hidden_sizes:
        layers += [nn.Linear(last, check_positive_int("hidden_sizes", h)), activation()]
        last = h
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


def _cov_parameter(cov: torch.Tensor | float, dim: int) -> nn.Parameter:
    """The log-Cholesky parameter of a covariance given as a matrix or as a scalar variance (times I)."""
    if not isinstance(cov, torch.Tensor):
        cov = float(cov) * torch.eye(dim, dtype=torch.get_default_dtype())
    return nn.Parameter(positive_definite_inverse(cov.detach().clone()))


class InitialState(nn.Module):
    """p(s_0) = N(s_0 | m_0, S_0), m_0 and S_0 learnable (S_0 through its log-Cholesky factor)."""

    def __init__(self, state_dim: int, initial_cov: float = 1.0) -> None:
        super().__init__()
        dx = check_positive_int("state_dim", state_dim)
        self.initial_mean = nn.Parameter(torch.zeros(dx))
        self.initial_cov_unconstrained = _cov_parameter(initial_cov, dx)

    def forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(m_0: (dx,), L_0: (dx, dx)) with S_0 = L_0 L_0ᵀ."""
        return self.initial_mean, cholesky_from_unconstrained(self.initial_cov_unconstrained)


class GaussianTransition(nn.Module):
    """p(s_t | s_{t-1}, u_t, θ) = N(s_t | f_θ(s_{t-1}, u_t), F).

    ``mean="linear"``: f_θ = E s_{t-1} + B u_t + b (E starts at ``0.9 I``, b at 0);
    ``mean="mlp"``: f_θ = s_{t-1} + MLP([s_{t-1}, u_t]) (residual: the identity map to start from).
    F is full and does not depend on the state; it starts at ``transition_cov`` I.
    """

    def __init__(self, state_dim: int, control_dim: int = 0, mean: str = "linear",
                 hidden_sizes: Sequence[int] = (64, 64), transition_cov: float = 0.1) -> None:
        super().__init__()
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.control_dim = check_positive_int("control_dim", control_dim, allow_zero=True)
        self.mean_kind = check_choice("mean", mean, MEANS)
        if mean == "linear":
            self.transition_matrix = nn.Parameter(0.9 * torch.eye(state_dim))
            self.bias = nn.Parameter(torch.zeros(state_dim))
            self.control_matrix = nn.Parameter(torch.zeros(state_dim, control_dim)) if control_dim else None
        else:
            self.net = mlp(state_dim + control_dim, state_dim, hidden_sizes)
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)
        self.transition_cov_unconstrained = _cov_parameter(transition_cov, state_dim)

    def scale_tril(self) -> torch.Tensor:
        """L_F with F = L_F L_Fᵀ: (dx, dx)."""
        return cholesky_from_unconstrained(self.transition_cov_unconstrained)

    def forward(self, previous_state: torch.Tensor,
                control: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``previous_state: (..., dx)`` s_{t-1}, ``control: (..., du)`` u_t -> (f_θ(s_{t-1}, u_t): (..., dx), L_F)."""
        if self.mean_kind == "linear":
            mean = matvec(self.transition_matrix, previous_state) + self.bias
            if self.control_matrix is not None and control is not None:
                mean = mean + matvec(self.control_matrix, control)
        else:
            x = previous_state
            if self.control_dim:
                x = torch.cat([x, control.expand(previous_state.shape[:-1] + control.shape[-1:])], -1)
            mean = previous_state + self.net(x)
        return mean, self.scale_tril()


class GaussianEmission(nn.Module):
    """p(y_t | s_t) = N(y_t | g_θ(s_t), D); g_θ = C s_t + c (``mean="linear"``) or an MLP; D full."""

    def __init__(self, state_dim: int, obs_dim: int, mean: str = "linear",
                 hidden_sizes: Sequence[int] = (64, 64), emission_cov: float = 0.1) -> None:
        super().__init__()
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.mean_kind = check_choice("mean", mean, MEANS)
        if mean == "linear":
            self.emission_matrix = nn.Parameter(torch.randn(obs_dim, state_dim) / state_dim ** 0.5)
            self.bias = nn.Parameter(torch.zeros(obs_dim))
        else:
            self.net = mlp(state_dim, obs_dim, hidden_sizes)
        self.emission_cov_unconstrained = _cov_parameter(emission_cov, obs_dim)

    def mean(self, state: torch.Tensor) -> torch.Tensor:
        """E[y_t | s_t] = g_θ(s_t): (..., dy)."""
        if self.mean_kind == "linear":
            return matvec(self.emission_matrix, state) + self.bias
        return self.net(state)

    def scale_tril(self) -> torch.Tensor:
        """L_D with D = L_D L_Dᵀ: (dy, dy)."""
        return cholesky_from_unconstrained(self.emission_cov_unconstrained)

    def log_prob(self, observation: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """log N(y_t | g_θ(s_t), D): (...) for ``observation: (..., dy)``, ``state: (..., dx)``."""
        return log_prob(observation, self.mean(state), self.scale_tril())

    def sample(self, state: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """y_t ~ N(g_θ(s_t), D): (..., dy)."""
        mean = self.mean(state)
        noise = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
        return rsample(mean, self.scale_tril(), noise)


class BernoulliEmission(nn.Module):
    """p(y_t | s_t) = Π_i Bernoulli(y_{t,i} | sigmoid(g_θ(s_t)_i)) for binary images flattened to dy pixels.

    log p(y_t | s_t) = Σ_i [y_i ℓ_i - log(1 + exp ℓ_i)] with the logits ℓ = g_θ(s_t) of an MLP.
    """

    def __init__(self, state_dim: int, obs_dim: int, hidden_sizes: Sequence[int] = (128, 128)) -> None:
        super().__init__()
        self.state_dim = check_positive_int("state_dim", state_dim)
        self.obs_dim = check_positive_int("obs_dim", obs_dim)
        self.net = mlp(state_dim, obs_dim, hidden_sizes, activation=nn.ReLU)

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """ℓ = g_θ(s_t): (..., dy)."""
        return self.net(state)

    def mean(self, state: torch.Tensor) -> torch.Tensor:
        """E[y_t | s_t] = sigmoid(ℓ): (..., dy), the pixel probabilities."""
        return torch.sigmoid(self.logits(state))

    def log_prob(self, observation: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Σ_i [y_i ℓ_i - softplus(ℓ_i)]: (...)."""
        logits = self.logits(state)
        return (observation * logits - nnf.softplus(logits)).sum(-1)

    def sample(self, state: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """y_t ~ Bernoulli(sigmoid(ℓ)): (..., dy) of 0.0 / 1.0."""
        p = self.mean(state)
        return (torch.rand(p.shape, dtype=p.dtype, device=p.device, generator=generator) < p).to(p.dtype)


class GenerativeModel(nn.Module):
    """p_θ(s_{0:T}, Y_{1:T}) = p(s_0) Π_t p(s_t | s_{t-1}, u_t, θ) p(y_t | s_t).

    Built from its three parts (``initial``: :class:`InitialState`, ``transition``:
    :class:`GaussianTransition`, ``emission``: :class:`GaussianEmission` or :class:`BernoulliEmission`),
    or with :meth:`from_linear_gaussian` or :func:`make_generative_model`. Every emission offers
    ``log_prob(y, s)``, ``mean(s)`` and ``sample(s, generator)``: the ELBO and the prediction use only these.
    """

    def __init__(self, initial: InitialState, transition: GaussianTransition, emission: nn.Module) -> None:
        super().__init__()
        if transition.state_dim != emission.state_dim:
            raise ValueError(f"emission: expected state_dim {transition.state_dim} (the transition's), "
                             f"got {emission.state_dim}")
        if initial.initial_mean.shape[-1] != transition.state_dim:
            raise ValueError(f"initial: expected state_dim {transition.state_dim} (the transition's), "
                             f"got {initial.initial_mean.shape[-1]}")
        self.initial = initial
        self.transition = transition
        self.emission = emission

    @property
    def state_dim(self) -> int:
        """dx, the size of s_t."""
        return self.transition.state_dim

    @property
    def obs_dim(self) -> int:
        """dy, the size of y_t."""
        return self.emission.obs_dim

    @property
    def control_dim(self) -> int:
        """du, the size of u_t (0: no actions)."""
        return self.transition.control_dim

    @classmethod
    def from_linear_gaussian(cls, ssm: LinearGaussianSSM) -> GenerativeModel:
        """The linear-Gaussian model θ = {m_0, S_0, E, F, C, D, B} exactly: linear means, zero biases.

        ``ssm`` needs fixed matrices and no batch dimensions; S_0, F and D must be positive definite
        (they are stored through their Cholesky factors). Parameters take ``ssm``'s dtype.
        """
        if not isinstance(ssm, LinearGaussianSSM):
            raise TypeError(f"ssm: expected a LinearGaussianSSM, got {type(ssm).__name__}")
        if len(ssm.batch_shape) or ssm.num_steps is not None or ssm.transition_matrix.ndim != 2:
            raise ValueError("ssm: expected fixed matrices without batch dimensions, got batch shape "
                             f"{tuple(ssm.batch_shape)} and transition_matrix of shape {tuple(ssm.transition_matrix.shape)}")
        check_definite(ssm)
        dx, dy, du = ssm.state_dim, ssm.obs_dim, ssm.control_dim or 0
        dtype = ssm.initial_mean.dtype
        model = cls(InitialState(dx), GaussianTransition(dx, du, "linear"), GaussianEmission(dx, dy, "linear"))
        model.to(dtype=dtype, device=ssm.initial_mean.device)
        with torch.no_grad():
            model.initial.initial_mean.copy_(ssm.initial_mean)
            model.initial.initial_cov_unconstrained.copy_(positive_definite_inverse(ssm.initial_cov))
            model.transition.transition_matrix.copy_(ssm.transition_matrix)
            model.transition.transition_cov_unconstrained.copy_(positive_definite_inverse(ssm.transition_cov))
            if du:
                model.transition.control_matrix.copy_(ssm.control_matrix)
            model.emission.emission_matrix.copy_(ssm.emission_matrix)
            model.emission.emission_cov_unconstrained.copy_(positive_definite_inverse(ssm.emission_cov))
        return model

    def sample(self, num_sequences: int, num_steps: int, controls: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling s_0 ~ p(s_0), s_t ~ p(s_t | s_{t-1}, u_t, θ), y_t ~ p(y_t | s_t).

        ``controls: (B, T, du)``. Returns ``(states: (B, T+1, dx), observations: (B, T, dy))``, s_{0:T} and Y_{1:T}.
        """
        B = check_positive_int("num_sequences", num_sequences)
        T = check_positive_int("num_steps", num_steps)
        m0, L0 = self.initial()

        def noise() -> torch.Tensor:
            return torch.randn((B, self.state_dim), dtype=m0.dtype, device=m0.device, generator=generator)

        states = [rsample(m0, L0, noise())]
        for t in range(T):
            mean, L = self.transition(states[-1], None if controls is None else controls[:, t])
            states.append(rsample(mean, L, noise()))
        s = torch.stack(states, -2)
        return s, self.emission.sample(s[:, 1:], generator)


def check_definite(ssm: LinearGaussianSSM) -> None:
    """Refuse a singular S_0 or F (the VSSM's Gaussians need densities: log q and log p of every s_t)."""
    for name, symbol in (("initial_cov", "S_0"), ("transition_cov", "F")):
        _, info = torch.linalg.cholesky_ex(getattr(ssm, name))
        if bool((info != 0).any()):
            raise ValueError(f"ssm.{name} ({symbol}): expected a positive-definite covariance, got a singular one "
                             "(a VSSM needs densities p(s_0) and p(s_t | s_{t-1}); add a small multiple of I)")


def make_generative_model(state_dim: int, obs_dim: int, control_dim: int = 0, *, transition: str = "mlp",
                          emission: str = "gaussian", emission_mean: str = "mlp",
                          hidden_sizes: Sequence[int] = (64, 64)) -> GenerativeModel:
    """A :class:`GenerativeModel` by name: ``transition`` "linear" | "mlp"; ``emission`` "gaussian" | "bernoulli";
    ``emission_mean`` "linear" | "mlp" (Gaussian emission only)."""
    check_positive_int("state_dim", state_dim)
    check_choice("emission", emission, ("gaussian", "bernoulli"))
    em = (GaussianEmission(state_dim, obs_dim, emission_mean, hidden_sizes) if emission == "gaussian"
          else BernoulliEmission(state_dim, obs_dim, hidden_sizes))
    return GenerativeModel(InitialState(state_dim), GaussianTransition(state_dim, control_dim, transition, hidden_sizes),
                           em)


def check_dtype(observations: torch.Tensor, **modules: nn.Module) -> None:
    """Refuse observations whose dtype differs from a module's parameters (float32 modules, float64 data)."""
    for name, module in modules.items():
        param = next((p for p in module.parameters() if p.is_floating_point()), None)
        if param is not None and isinstance(observations, torch.Tensor) and observations.dtype != param.dtype:
            fix = ".double()" if observations.dtype == torch.float64 else ".float()"
            raise ValueError(f"observations: expected dtype {param.dtype} (the dtype of {name}'s parameters), "
                             f"got {observations.dtype}; convert one of them, e.g. {name}{fix}")


@dataclass
class Sequences:
    """A checked batch of sequences: what :func:`check_sequences` returns."""

    observations: torch.Tensor
    """Y_{1:T} with masked steps set to 0 (no NaN left): (B, T, dy)"""
    mask: torch.Tensor
    """True where y_t is observed: (B, T) bool"""
    controls: torch.Tensor | None
    """u_{1:T}: (B, T, du), or None"""

    @property
    def counted(self) -> torch.Tensor:
        """True for t = 1..T up to the sequence's last observed step (where s_t enters the ELBO): (B, T) bool."""
        return self.mask.flip(-1).to(torch.int8).cummax(-1).values.flip(-1).bool()


def check_sequences(observations: torch.Tensor, mask: torch.Tensor | None, controls: torch.Tensor | None,
                    obs_dim: int, control_dim: int = 0) -> Sequences:
    """Check a batch of sequences against a model: shapes, dtypes, NaN only where masked.

    ``observations: (B, T, dy)`` with dy = ``obs_dim``; ``mask: (B, T)`` bool, True where y_t is observed
    (padding and missing steps False; None: the steps whose y_t is entirely NaN are masked, a partly NaN
    y_t is refused); ``controls: (B, T, du)`` when ``control_dim`` > 0. Masked observations are replaced
    by 0 so that no NaN reaches a value or a gradient.
    """
    if not isinstance(observations, torch.Tensor):
        raise TypeError(f"observations: expected a tensor of shape (B, T, {obs_dim}), got {type(observations).__name__}")
    check_floating("observations", observations)
    if observations.ndim != 3 or observations.shape[-1] != obs_dim or observations.shape[1] == 0:
        raise ValueError(f"observations: expected shape (B, T, {obs_dim}) with T >= 1 (dy = {obs_dim}, the "
                         f"model's obs_dim), got {tuple(observations.shape)}")
    B, T, _ = observations.shape
    nan = torch.isnan(observations)
    if mask is None:
        mask = ~nan.all(-1)
    else:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (B, T):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            dtype = f" of dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else ""
            raise ValueError(f"mask: expected a bool tensor of shape ({B}, {T}), got {got}{dtype}")
        mask = mask.to(observations.device)
    bad = (nan | torch.isinf(observations)).any(-1) & mask
    if bool(bad.any()):
        b, t = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"observations: expected finite values where mask is True, got NaN/inf at sequence {b}, "
                         f"step {t} (mask a missing step with mask[{b}, {t}] = False)")
    if control_dim:
        if controls is None:
            raise ValueError(f"controls: the model takes actions u_t, expected shape ({B}, {T}, {control_dim}), got None")
        if not isinstance(controls, torch.Tensor) or tuple(controls.shape) != (B, T, control_dim):
            got = tuple(controls.shape) if isinstance(controls, torch.Tensor) else type(controls).__name__
            raise ValueError(f"controls: expected shape ({B}, {T}, {control_dim}), got {got}")
        controls = controls.to(observations.dtype)
    elif controls is not None:
        raise ValueError("controls: the model has no actions (control_dim = 0), got a tensor; build it with control_dim")
    clean = torch.where(mask.unsqueeze(-1), observations, torch.zeros((), dtype=observations.dtype,
                                                                       device=observations.device))
    return Sequences(clean, mask, controls)
