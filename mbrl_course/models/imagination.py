"""Imagination in the world model: batched rollouts of action sequences with trajectory sampling.

The planners of the MPC loop score an action sequence u_{1:H} by the return it earns in the model,

    G = Σ_{t=1}^{H} γ^{t-1} g(i_t, u_t, i_{t+1}),   i_{t+1}, g_t ~ f_ψ(i_t, u_t),   i_1 = i,

estimated with P particles per sequence (PETS, Chua et al. 2018): Ĝ = 1/P Σ_p G^p. How a particle
uses the ensemble p(i' | i, u) = 1/K Σ_k N(μ_ψ^k, Σ_ψ^k) is the *propagation* mode:

``"ts1"``
    every step each particle draws a member k afresh, uniformly; i_{t+1} = i_t + μ_Δ^k + σ_Δ^k ε, ε ~ N(0, I).
``"ts_inf"``
    each particle draws its member once and keeps it for the whole horizon (so the spread between
    particles shows the spread between members: epistemic uncertainty).
``"expectation"``
    no sampling: i_{t+1} = i_t + 1/K Σ_k μ_Δ^k(i_t, u_t), the mixture mean (one deterministic trajectory).

Layout. All particles of all sequences advance together. The members' particles sit in a
``(K', n, ·)`` block so one ``baddbmm`` per layer serves every member at once (no Python loop over
members, particles or sequences): for TS∞ particles are dealt to the blocks once, at random, at the
start; for TS1 a fresh random permutation deals them every step. Dealing gives every member the same
number of particles (M / K', the particles padded with copies to a multiple of K'), a uniform random
assignment up to that balance, as in mbrl-lib. K' is the number of members used (the elites, by default).

:class:`EnsemblePropagator` is the ensemble's side of the model contract (its ``propagator``): the
rollout primitive (:func:`~mbrl_course.models.rollout`) asks it once per rollout for the row layout
(TS∞'s deal) and then steps every row. A deterministic model (``DeltaMLP``, ``TrueDynamics``) has
one way to step and needs one particle: :func:`imagine_returns` then runs P = 1 whatever ``particles``
says, and likewise for ``"expectation"``, whose P trajectories would all be identical.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mbrl_course._checks import (
    as_tensor,
    check_choice,
    check_finite,
    check_positive_float,
    check_positive_int,
    check_shape,
)
from mbrl_course.models.base import Propagator
from mbrl_course.models.rollout import _run

__all__ = ["PROPAGATIONS", "EnsemblePropagator", "step_particles", "imagine_returns"]

PROPAGATIONS: tuple[str, ...] = ("ts1", "ts_inf", "expectation")

RewardFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _standard_normal(shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor
                     ) -> torch.Tensor:
    """ε ~ N(0, I) of ``shape`` drawn with ``generator`` (on its own device), returned on ``like``'s device."""
    if generator is None or generator.device == like.device:
        return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype).to(like.device)


def _random_perm(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    where = generator.device if generator is not None else device
    return torch.randperm(n, generator=generator, device=where).to(device)


def _step_blocks(model, obs: torch.Tensor, action: torch.Tensor, members: torch.Tensor | None,
                 num_members: int, generator: torch.Generator | None, sample_reward: bool, folded
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Advance particles already laid out member by member: rows ``k·n .. (k+1)·n − 1`` use member k.

    ``obs: (K'·n, O)``, ``action: (K'·n, A)`` -> next_obs ``(K'·n, O)``, reward ``(K'·n,)`` or None.
    """
    total = obs.shape[0]
    n = total // num_members
    width = model.out_dim if (sample_reward and model.predict_reward) else model.obs_dim
    noise = _standard_normal((num_members, n, width), generator, obs)
    next_obs, reward = model.step_members(
        obs.reshape(num_members, n, -1), action.reshape(num_members, n, -1), members=members, noise=noise,
        folded=folded,
    )
    return next_obs.reshape(total, -1), (None if reward is None else reward.reshape(total))


def _step(model, obs: torch.Tensor, action: torch.Tensor, propagation: str,
          member_of_particle: torch.Tensor | None, generator: torch.Generator | None,
          members: torch.Tensor | None, sample_reward: bool, want_members: bool = False, folded=None
          ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """:func:`step_particles` without argument checks; ``members`` already resolved, ``folded`` =
    ``model.fold(members)`` or None. Also returns the position (0..K'−1 among ``members``) of the
    member each particle used when ``want_members``, else None."""
    if folded is None:
        folded = model.fold(members)
    K = model.num_members(members)
    M = obs.shape[0]
    device = obs.device
    if propagation == "expectation":  # i' = 1/K Σ_k μ^k(i, u): every member on every particle
        next_obs, reward = model.step_members(obs.expand(K, -1, -1), action.expand(K, -1, -1),
                                              members=members, noise=None, folded=folded)
        return next_obs.mean(0), (None if reward is None else reward.mean(0)), None

    if propagation == "ts_inf" and member_of_particle is None:  # block layout: particle j uses member j // n
        if M % K:
            raise ValueError(
                f"obs: ts_inf without member_of_particle needs the particle count M to be a multiple of the "
                f"{K} members (particle j uses member j // (M / {K})), got M = {M}; pad the particles or "
                f"pass member_of_particle"
            )
        next_obs, reward = _step_blocks(model, obs, action, members, K, generator, sample_reward, folded)
        return next_obs, reward, (torch.arange(M, device=device) // (M // K) if want_members else None)

    if propagation == "ts1":
        # deal the M particles (padded to a multiple of K with copies) into K equal blocks at random:
        # slot s holds particle perm[s] (a padding slot when perm[s] >= M) and uses member s // n
        n = -(-M // K)
        perm = _random_perm(n * K, generator, device)
        source = perm % M
        slot_of_particle = torch.empty_like(perm)
        slot_of_particle[perm] = torch.arange(n * K, device=device)
        slot_of_particle = slot_of_particle[:M]
    else:
        # ts_inf with a given assignment: group the particles by member, pad the groups to equal size
        counts = torch.bincount(member_of_particle, minlength=K)
        n = int(counts.max())
        order = torch.argsort(member_of_particle, stable=True)
        member_sorted = member_of_particle[order]
        rank = torch.arange(M, device=device) - (torch.cumsum(counts, 0) - counts)[member_sorted]
        slot_sorted = member_sorted * n + rank
        source = torch.zeros(n * K, dtype=torch.long, device=device)
        source[slot_sorted] = order
        slot_of_particle = torch.empty_like(order)
        slot_of_particle[order] = slot_sorted
    next_slots, reward_slots = _step_blocks(model, obs[source], action[source], members, K, generator,
                                            sample_reward, folded)
    next_obs = next_slots[slot_of_particle]
    reward = None if reward_slots is None else reward_slots[slot_of_particle]
    return next_obs, reward, (slot_of_particle // n if want_members else None)


class EnsemblePropagator(Propagator):
    """How M particles use the ensemble p(i' | i, u) = 1/K' Σ_k N(μ_ψ^k, Σ_ψ^k) during one rollout.

    Made by :meth:`GaussianEnsemble.propagator`; see the module docstring for the three modes. The
    members' weights are folded once (:meth:`GaussianEnsemble.fold`). For ``"ts_inf"`` without a given
    assignment, :meth:`layout` deals the trajectories once, at random, into K' equal blocks of rows
    (padded with copies to a multiple of K'), and row r keeps member r // (R / K') for the whole horizon.

    Args:
        model: the ensemble.
        propagation: one of :data:`PROPAGATIONS`.
        members: which members propagate: "elites" (default), "all" or an index tensor.
        generator: torch generator for ε, the TS1 permutations and the TS∞ deal.
        sample_reward: sample the reward from the member's Gaussian too (MBPO), not only the next state.
        member_of_particle: TS∞ only, a fixed assignment ``(M,)`` of positions in 0..K'−1 among ``members``
            (any counts; each step then gathers the rows member by member).
    """

    def __init__(self, model, *, propagation: str = "ts_inf", members="elites",
                 generator: torch.Generator | None = None, sample_reward: bool = False,
                 member_of_particle: torch.Tensor | None = None):
        self.model = model
        self.propagation = check_choice("propagation", propagation, PROPAGATIONS)
        self.generator = generator
        self.sample_reward = bool(sample_reward)
        self.idx = model.member_indices(members)
        self.num_members = self.components = model.num_members(self.idx)
        self.folded = model.fold(self.idx)  # normalisations folded into the weights, once per rollout
        self.deterministic = self.propagation == "expectation"
        self.record_members = False
        self._used: torch.Tensor | None = None
        if member_of_particle is not None and self.propagation == "ts_inf":
            member_of_particle = as_tensor("member_of_particle", member_of_particle, device=model.device)
            K = self.num_members
            if member_of_particle.dtype not in (torch.int64, torch.int32) or member_of_particle.dim() != 1 or bool(
                ((member_of_particle < 0) | (member_of_particle >= K)).any()
            ):
                raise ValueError(f"member_of_particle: expected a 1-D tensor of integers in [0, {K}) (positions "
                                 f"among the propagating members)")
            member_of_particle = member_of_particle.long()
        else:
            member_of_particle = None
        self.member_of_particle = member_of_particle

    def layout(self, rows: int) -> torch.Tensor | None:
        if self.propagation != "ts_inf" or self.member_of_particle is not None:
            return None
        K = self.num_members
        return _random_perm(-(-rows // K) * K, self.generator, self.model.device)  # ids >= rows: padding copies

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.member_of_particle is not None and self.member_of_particle.shape[0] != obs.shape[0]:
            raise ValueError(f"member_of_particle: expected one member per particle, ({obs.shape[0]},), got "
                             f"{tuple(self.member_of_particle.shape)}")
        next_obs, reward, used = _step(self.model, obs, action, self.propagation, self.member_of_particle,
                                       self.generator, self.idx, self.sample_reward, self.record_members,
                                       self.folded)
        self._used = used
        return next_obs, reward

    def rows_used(self) -> torch.Tensor | None:
        if self._used is None:
            return None
        return self._used if self.idx is None else self.idx[self._used]


def step_particles(
    model,
    obs: torch.Tensor,
    action: torch.Tensor,
    *,
    propagation: str = "ts_inf",
    member_of_particle: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    members="elites",
    sample_reward: bool = False,
    return_members: bool = False,
):
    """One imagined step for M particles: i'_m, g_m ~ f_ψ(i_m, u_m), through ``model.propagator(...)``.

    For an ensemble, particle m uses member k(m) and i'_m = i_m + m_Δ + s_Δ (μ̃^k + σ̃^k ε_m) with
    ε_m ~ N(0, I) (:meth:`GaussianEnsemble.step_members`); the reward is the member's predicted mean
    (or a sample too with ``sample_reward=True``, as MBPO does). Which k(m):

    - ``"ts_inf"``: the caller's fixed assignment. ``member_of_particle=None`` means the block layout
      k(m) = m // (M / K') (M must be a multiple of K'; no gather at all); otherwise
      ``member_of_particle: (M,)`` with values in 0..K'−1 (positions in ``members``), any counts.
    - ``"ts1"``: a fresh uniform random permutation deals the particles to the K' members
      (M padded to a multiple of K'); ``member_of_particle`` is ignored.
    - ``"expectation"``: i'_m = i_m + 1/K' Σ_k μ^k, the reward likewise averaged; no sampling.

    A deterministic model (``DeltaMLP``, ``TrueDynamics``) takes its one step whatever the options say.

    Args:
        model: a :class:`~mbrl_course.models.DynamicsModel`.
        obs: i, ``(M, O)``. action: u, ``(M, A)``.
        propagation, member_of_particle, generator, members, sample_reward: see :class:`EnsemblePropagator`.
        return_members: also return the model member index each particle used, ``(M,)``
            (None for models without members and for "expectation").
    Returns:
        next_obs ``(M, O)``, reward ``(M,)`` or None when the model predicts no reward [, members ``(M,)``].
    """
    check_choice("propagation", propagation, PROPAGATIONS)
    obs = as_tensor("obs", obs, dtype=model.dtype, device=model.device)
    action = as_tensor("action", action, dtype=model.dtype, device=model.device)
    check_shape("obs", obs, ("M", model.obs_dim))
    check_shape("action", action, (obs.shape[0], model.act_dim))
    if obs.shape[0] == 0:
        raise ValueError("obs: expected at least one particle, got none")
    if member_of_particle is not None and propagation == "ts_inf":
        check_shape("member_of_particle", as_tensor("member_of_particle", member_of_particle), (obs.shape[0],))
    propagator = model.propagator(propagation=propagation, member_of_particle=member_of_particle,
                                  generator=generator, members=members, sample_reward=sample_reward)
    propagator.record_members = return_members
    next_obs, reward = propagator.step(obs, action)
    if not return_members:
        return next_obs, reward
    return next_obs, reward, propagator.rows_used()


@torch.no_grad()
def imagine_returns(
    model,
    obs: torch.Tensor,
    action_sequences: torch.Tensor,
    *,
    reward_fn: RewardFn | None,
    termination_fn: RewardFn | None = None,
    particles: int = 20,
    propagation: str = "ts_inf",
    generator: torch.Generator | None = None,
    discount: float = 1.0,
    members="elites",
    return_members: bool = False,
    check: bool = True,
):
    """Ĝ_n = 1/P Σ_p Σ_{t=1}^{H} γ^{t−1} g(i^p_t, u^n_t, i^p_{t+1}) · [particle p alive at t], for each sequence n.

    The planners' objective: P particles per sequence start at i_1 = ``obs`` and step through the model
    H times, one :func:`~mbrl_course.models.rollout` of N·P trajectories (a particle whose step fires
    ``termination_fn`` earns that step's reward, then nothing more). Runs without gradients (planners
    only rank the returns).

    Args:
        model: a :class:`~mbrl_course.models.DynamicsModel`; a deterministic one (``DeltaMLP``,
            ``TrueDynamics``, or an ensemble under ``"expectation"``) runs P = 1.
        obs: the start state, ``(O,)`` shared by all sequences or ``(N, O)`` one per sequence.
        action_sequences: u^n_{1:H}, ``(N, H, A)``.
        reward_fn: batched g(i, u, i') -> ``(M,)`` on ``(M, O), (M, A), (M, O)``; None uses the model's
            predicted reward (mean), which needs ``predict_reward=True``.
        termination_fn: batched done(i, u, i') -> ``(M,)`` bool, or None for no termination.
        particles: P for the trajectory-sampling modes.
        propagation: ``"ts_inf"`` (default), ``"ts1"`` or ``"expectation"`` (see the module docstring).
        generator: torch generator for the particles' noise and member draws.
        discount: γ in (0, 1].
        members: which members propagate: "elites" (default), "all" or an index tensor.
        return_members: also return the member index of every particle at every step,
            ``(H, N, P)`` (None for deterministic models and "expectation"), e.g. to check TS∞ vs TS1.
        check: refuse a start state with NaN/inf entries (one host sync per call); ``False`` for callers
            that checked it already, e.g. a planning call captured in a CUDA graph, where a sync is not allowed.
    Returns:
        returns ``(N,)`` [, members ``(H, N, P)``].
    """
    check_choice("propagation", propagation, PROPAGATIONS)
    device, dtype = model.device, model.dtype
    actions = as_tensor("action_sequences", action_sequences, dtype=dtype, device=device)
    check_shape("action_sequences", actions, ("N", "H", model.act_dim))
    N, H, _ = actions.shape
    if N == 0 or H == 0:
        raise ValueError(f"action_sequences: expected N >= 1 sequences of H >= 1 steps, got {tuple(actions.shape)}")
    obs = as_tensor("obs", obs, dtype=dtype, device=device)
    if obs.dim() == 2:
        check_shape("obs", obs, (N, model.obs_dim))
    else:
        check_shape("obs", obs, (model.obs_dim,))
    if check:
        check_finite("obs", obs)
    particles = check_positive_int("particles", particles)
    discount = check_positive_float("discount", discount)
    if discount > 1:
        raise ValueError(f"discount: expected a number in (0, 1], got {discount}")
    if reward_fn is None and not model.predict_reward:
        raise ValueError("reward_fn: None needs a model that predicts the reward (predict_reward=True); "
                         "pass the environment's batched reward function")

    propagator = model.propagator(generator=generator, propagation=propagation, members=members)
    P = 1 if propagator.deterministic else particles
    M = N * P
    # trajectory m = n·P + p starts at i^n and follows u^n (expand + reshape: no host sync, unlike repeat_interleave)
    start = obs.unsqueeze(1).expand(N, P, -1).reshape(M, -1) if obs.dim() == 2 else obs
    rows = _run(propagator, start, M, H, actions=actions.unsqueeze(1).expand(N, P, H, -1).reshape(M, H, -1),
                policy=None, reward_fn=reward_fn, termination_fn=termination_fn, record_members=return_members)
    returns = torch.zeros(rows.rollout.reward.shape[1], device=device, dtype=dtype)
    weight = 1.0
    for reward in rows.rollout.reward:  # Σ_t γ^{t−1} g_t, row by row
        returns.add_(reward, alpha=weight)
        weight *= discount
    if rows.ids is None:
        mean_returns = returns.view(N, P).mean(1)
    else:  # average the real rows of each sequence (padding copies ids >= M do not count)
        mean_returns = torch.zeros(N, device=device, dtype=dtype).index_add_(
            0, (rows.ids % M) // P, returns * (rows.ids < M)) / P
    if not return_members:
        return mean_returns
    members_used = rows.trajectories(M).members
    return mean_returns, None if members_used is None else members_used.reshape(H, N, P)
