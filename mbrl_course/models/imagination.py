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

A deterministic model (:class:`~mbrl_course.models.mlp.DeltaMLP`) ignores ``propagation`` and needs
one particle: :func:`imagine_returns` then runs P = 1 whatever ``particles`` says, and likewise for
``"expectation"``, whose P trajectories would all be identical.
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

__all__ = ["PROPAGATIONS", "step_particles", "imagine_returns"]

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
    if getattr(model, "deterministic", False):
        return model.step(obs, action), None, None
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
    """One imagined step for M particles: i'_m, g_m ~ f_ψ(i_m, u_m).

    For an ensemble, particle m uses member k(m) and i'_m = i_m + m_Δ + s_Δ (μ̃^k + σ̃^k ε_m) with
    ε_m ~ N(0, I) (:meth:`GaussianEnsemble.step_members`); the reward is the member's predicted mean
    (or a sample too with ``sample_reward=True``, as MBPO does). Which k(m):

    - ``"ts_inf"``: the caller's fixed assignment. ``member_of_particle=None`` means the block layout
      k(m) = m // (M / K') (M must be a multiple of K'; no gather at all: the fast path
      :func:`imagine_returns` uses); otherwise ``member_of_particle: (M,)`` with values in 0..K'−1
      (positions in ``members``), any counts.
    - ``"ts1"``: a fresh uniform random permutation deals the particles to the K' members
      (M padded to a multiple of K'); ``member_of_particle`` is ignored.
    - ``"expectation"``: i'_m = i_m + 1/K' Σ_k μ^k, the reward likewise averaged; no sampling.

    A deterministic model (``DeltaMLP``) computes i' = i + f_ψ(i, u), reward None, whatever the mode.

    Args:
        model: a ``GaussianEnsemble`` or a ``DeltaMLP``.
        obs: i, ``(M, O)``. action: u, ``(M, A)``.
        propagation: one of :data:`PROPAGATIONS`.
        member_of_particle: ``(M,)`` member positions for TS∞, or None for the block layout.
        generator: torch generator for ε and the TS1 permutation (best on the model's device).
        members: which members propagate: "elites" (default), "all" or an index tensor.
        sample_reward: sample the reward from the member's Gaussian instead of using its mean.
        return_members: also return the model member index each particle used, ``(M,)``
            (None for deterministic models and for "expectation").
    Returns:
        next_obs ``(M, O)``, reward ``(M,)`` or None when the model predicts no reward
        [, members ``(M,)``].
    """
    check_choice("propagation", propagation, PROPAGATIONS)
    obs = as_tensor("obs", obs, dtype=model.dtype, device=model.device)
    action = as_tensor("action", action, dtype=model.dtype, device=model.device)
    check_shape("obs", obs, ("M", model.obs_dim))
    check_shape("action", action, (obs.shape[0], model.act_dim))
    if obs.shape[0] == 0:
        raise ValueError("obs: expected at least one particle, got none")
    idx = None
    if not getattr(model, "deterministic", False):
        idx = model.member_indices(members)
        if propagation == "ts_inf" and member_of_particle is not None:
            member_of_particle = as_tensor("member_of_particle", member_of_particle, device=model.device)
            check_shape("member_of_particle", member_of_particle, (obs.shape[0],))
            K = model.num_members(idx)
            if member_of_particle.dtype not in (torch.int64, torch.int32) or bool(
                ((member_of_particle < 0) | (member_of_particle >= K)).any()
            ):
                raise ValueError(f"member_of_particle: expected integers in [0, {K}) (positions among the "
                                 f"propagating members)")
            member_of_particle = member_of_particle.long()
    next_obs, reward, used = _step(model, obs, action, propagation, member_of_particle, generator, idx,
                                   sample_reward, return_members)
    if not return_members:
        return next_obs, reward
    if used is not None and idx is not None:
        used = idx[used]
    return next_obs, reward, used


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
):
    """Ĝ_n = 1/P Σ_p Σ_{t=1}^{H} γ^{t−1} g(i^p_t, u^n_t, i^p_{t+1}) · [particle p alive at t], for each sequence n.

    P particles per sequence start at i_1 = ``obs`` and step through the model H times
    (:func:`step_particles`). A particle whose step fires ``termination_fn`` earns that step's reward,
    then nothing more, and its state stays frozen at the terminal state. Runs without gradients
    (planners only rank the returns); the model's weights are folded once per call (:meth:`GaussianEnsemble.fold`).

    Args:
        model: a ``GaussianEnsemble`` or a ``DeltaMLP`` (deterministic: P = 1, ``propagation`` ignored).
        obs: the start state, ``(O,)`` shared by all sequences or ``(N, O)`` one per sequence.
        action_sequences: u^n_{1:H}, ``(N, H, A)``.
        reward_fn: batched g(i, u, i') -> ``(M,)`` on ``(M, O), (M, A), (M, O)``; None uses the model's
            predicted reward (mean), which needs ``predict_reward=True``.
        termination_fn: batched done(i, u, i') -> ``(M,)`` bool, or None for no termination.
        particles: P for the trajectory-sampling modes (``"expectation"`` and deterministic models use 1).
        propagation: ``"ts_inf"`` (default), ``"ts1"`` or ``"expectation"`` (see the module docstring).
        generator: torch generator for the particles' noise and member draws.
        discount: γ in (0, 1].
        members: which members propagate: "elites" (default), "all" or an index tensor.
        return_members: also return the member index of every particle at every step,
            ``(H, N, P)`` (None for deterministic models and "expectation"), e.g. to check TS∞ vs TS1.
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
    check_finite("obs", obs)
    particles = check_positive_int("particles", particles)
    discount = check_positive_float("discount", discount)
    if discount > 1:
        raise ValueError(f"discount: expected a number in (0, 1], got {discount}")
    deterministic = bool(getattr(model, "deterministic", False))
    if reward_fn is None and (deterministic or not model.predict_reward):
        raise ValueError("reward_fn: None needs a model that predicts the reward (predict_reward=True); "
                         "pass the environment's batched reward function")

    idx = None if deterministic else model.member_indices(members)
    folded = None if deterministic else model.fold(idx)  # normalisations folded into the weights, once
    P = 1 if deterministic or propagation == "expectation" else particles
    M = N * P
    real = None
    if propagation == "ts_inf" and not deterministic:
        # deal the M particles (padded with copies to a multiple of K') at random into K' equal blocks:
        # slot s holds particle slot_particle[s] and keeps member s // (M_pad / K') for the whole horizon
        K = model.num_members(idx)
        M_pad = -(-M // K) * K
        slot_particle = _random_perm(M_pad, generator, device)  # ids >= M are padding copies
        real = slot_particle < M
        particle_of_slot = slot_particle % M
    else:
        M_pad = M
        slot_particle = particle_of_slot = torch.arange(M, device=device)
    seq_of_slot = particle_of_slot // P
    state = obs[seq_of_slot] if obs.dim() == 2 else obs.expand(M_pad, -1).clone()
    actions_t = actions.transpose(0, 1)[:, seq_of_slot]  # (H, M_pad, A): u^n_t for every slot, contiguous in t

    returns = torch.zeros(M_pad, device=device, dtype=dtype)
    alive = torch.ones(M_pad, device=device, dtype=torch.bool) if termination_fn is not None else None
    used_members = [] if return_members else None
    weight = 1.0
    for t in range(H):
        action = actions_t[t]
        next_state, model_reward, used = _step(model, state, action, propagation, None, generator, idx, False,
                                               return_members, folded)
        reward = model_reward if reward_fn is None else reward_fn(state, action, next_state)
        if t == 0:
            reward = as_tensor("reward_fn(obs, action, next_obs)", reward)
            check_shape("reward_fn(obs, action, next_obs)", reward, (M_pad,))
        if alive is None:
            returns.add_(reward, alpha=weight)
        else:
            returns.add_(torch.where(alive, reward, 0.0), alpha=weight)
            done = termination_fn(state, action, next_state)
            if t == 0:
                done = as_tensor("termination_fn(obs, action, next_obs)", done)
                check_shape("termination_fn(obs, action, next_obs)", done, (M_pad,))
            next_state = torch.where(alive.unsqueeze(-1), next_state, state)  # the dead stay where they ended
            alive = alive & ~done.bool()
        state = next_state
        weight *= discount
        if used_members is not None:
            used_members.append(used)

    if real is None:
        mean_returns = returns.view(N, P).mean(1)
    else:
        mean_returns = torch.zeros(N, device=device, dtype=dtype).index_add_(
            0, seq_of_slot, returns * real
        ) / P
    if not return_members:
        return mean_returns
    if deterministic or propagation == "expectation":
        return mean_returns, None
    member_ids = torch.stack(used_members)  # (H, M_pad) positions among the propagating members
    if idx is not None:
        member_ids = idx[member_ids]
    per_particle = torch.empty_like(member_ids)
    per_particle[:, slot_particle] = member_ids
    return mean_returns, per_particle[:, :M].reshape(H, N, P)
