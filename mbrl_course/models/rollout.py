"""The one rollout primitive: imagine H steps in any model of the contract.

From a batch of start states i_1, for t = 1..H,

    u_t = u^m_t (a given action sequence: the planners)   or   u_t ~ μ_θ(· | i_t) (a policy: Dyna, PILCO, Dreamer)
    i_{t+1}, g_t ~ f_ψ(i_t, u_t)          (the model's :class:`~mbrl_course.models.Propagator`)
    g_t := g(i_t, u_t, i_{t+1})           (the env's reward function, where given; else the model's reward)
    d_t := done(i_t, u_t, i_{t+1})        (the env's termination function, where given)

A trajectory whose step fires d_t keeps that step (its reward counts) and is *dead* afterwards: its
state stays frozen and ``alive`` is False for the rest of the horizon. Nothing here switches gradients
off: with gradients enabled (the caller's choice) the returns reach the policy's parameters and the
model's, as PILCO, Deep PILCO, Dreamer's actor and iLQR need; planners call it under ``torch.no_grad``.

:func:`rollout` returns every step (:class:`Rollout`); :func:`~mbrl_course.models.imagine_returns` (the
planners' objective) and the Dyna loop's branched rollouts are written on top of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mbrl_course._checks import as_tensor, check_positive_float, check_positive_int, check_shape
from mbrl_course.models.base import Propagator

__all__ = ["Rollout", "rollout"]

StepFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
PolicyFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Rollout:
    """H imagined steps of M trajectories, time-major.

    Step t of trajectory m is a real imagined transition (i_t, u_t, g_t, i_{t+1}) only where
    ``alive[t, m]``; after a trajectory ends its state stays where it ended and its reward is 0.
    """

    obs: torch.Tensor
    """i_1 .. i_{H+1}: (H+1, M, O)"""
    action: torch.Tensor
    """u_1 .. u_H: (H, M, A)"""
    reward: torch.Tensor
    """g_t, 0 where not alive: (H, M)"""
    terminated: torch.Tensor
    """True where the termination function fired at step t: (H, M) bool"""
    alive: torch.Tensor
    """True where trajectory m was still running at step t: (H, M) bool"""
    members: torch.Tensor | None = None
    """which ensemble member each trajectory used at each step, (H, M), when asked for and the model has members"""

    @property
    def next_obs(self) -> torch.Tensor:
        """i_2 .. i_{H+1}: (H, M, O)."""
        return self.obs[1:]

    def returns(self, discount: float = 1.0) -> torch.Tensor:
        """G_m = Σ_{t=1}^{H} γ^{t−1} g_t [alive at t]: (M,)."""
        discount = check_positive_float("discount", discount)
        if discount > 1:
            raise ValueError(f"discount: expected a number in (0, 1], got {discount}")
        weights = discount ** torch.arange(self.reward.shape[0], device=self.reward.device, dtype=self.reward.dtype)
        return (weights.unsqueeze(-1) * self.reward).sum(0)


@dataclass
class _Rows:
    """A rollout in the propagator's row layout (see :meth:`Propagator.layout`): what :func:`_run` returns."""

    rollout: Rollout
    ids: torch.Tensor | None
    """``(R,)``: row r holds trajectory ids[r] mod M; ids[r] ≥ M marks a padding copy. None: the identity."""

    def trajectories(self, num: int) -> Rollout:
        """The rollout in trajectory order (each trajectory's real row), ``(·, num, ·)``."""
        if self.ids is None:
            return self.rollout
        row_of = torch.empty_like(self.ids)
        row_of[self.ids] = torch.arange(self.ids.shape[0], device=self.ids.device)
        row_of = row_of[:num]
        r = self.rollout
        return Rollout(obs=r.obs[:, row_of], action=r.action[:, row_of], reward=r.reward[:, row_of],
                       terminated=r.terminated[:, row_of], alive=r.alive[:, row_of],
                       members=None if r.members is None else r.members[:, row_of])


def _run(
    propagator: Propagator,
    start_obs: torch.Tensor,
    num: int,
    horizon: int,
    *,
    actions: torch.Tensor | None,
    policy: PolicyFn | None,
    reward_fn: StepFn | None,
    termination_fn: StepFn | None,
    stop_nonfinite: bool = False,
    record_members: bool = False,
) -> _Rows:
    """The loop of :func:`rollout` without argument checks, in the propagator's row layout.

    ``start_obs``: ``(num, O)`` or ``(O,)`` shared; ``actions``: ``(num, H, A)`` or None (then ``policy``).
    """
    if record_members:
        propagator.record_members = True
    slot_ids = propagator.layout(num)
    if slot_ids is None:
        source = None
        rows = num
    else:
        source = slot_ids % num  # the trajectory each row holds
        rows = slot_ids.shape[0]
    if start_obs.dim() == 1:
        state = start_obs.expand(rows, -1).clone()
    else:
        state = start_obs if source is None else start_obs[source]
    # u^m_t for every row, contiguous in t: (H, R, A)
    actions_t = None if actions is None else (
        actions.transpose(0, 1) if source is None else actions.transpose(0, 1)[:, source])
    track = termination_fn is not None or stop_nonfinite
    alive = torch.ones(rows, device=state.device, dtype=torch.bool)
    states, taken, rewards, alives, ends, members = [state], [], [], [], [], []
    for t in range(horizon):
        action = actions_t[t] if actions_t is not None else policy(state)  # u_t (~ μ_θ(u | i_t))
        next_state, model_reward = propagator.step(state, action)  # i_{t+1}, g_t ~ f_ψ(i_t, u_t)
        reward = model_reward if reward_fn is None else reward_fn(state, action, next_state)
        if t == 0:
            reward = as_tensor("reward_fn(obs, action, next_obs)", reward)
            check_shape("reward_fn(obs, action, next_obs)", reward, (rows,))
        if track:
            step_alive = alive
            if stop_nonfinite:  # a prediction that is not finite ends the trajectory, and its step does not count
                step_alive = alive & torch.isfinite(next_state).all(-1) & torch.isfinite(reward)
            done = torch.zeros_like(alive)
            if termination_fn is not None:
                done = termination_fn(state, action, next_state)
                if t == 0:
                    done = as_tensor("termination_fn(obs, action, next_obs)", done)
                    check_shape("termination_fn(obs, action, next_obs)", done, (rows,))
                done = done.bool() & step_alive
            reward = torch.where(step_alive, reward, 0.0)
            next_state = torch.where(step_alive.unsqueeze(-1), next_state, state)  # the dead stay where they ended
            alive = step_alive & ~done
            alives.append(step_alive)
            ends.append(done)
        taken.append(action)
        rewards.append(reward)
        states.append(next_state)
        if record_members:
            members.append(propagator.rows_used())
        state = next_state
    if track:
        alive_all, terminated = torch.stack(alives), torch.stack(ends)
    else:
        alive_all = torch.ones(horizon, rows, device=state.device, dtype=torch.bool)
        terminated = torch.zeros_like(alive_all)
    used = torch.stack(members) if record_members and members and members[0] is not None else None
    out = Rollout(obs=torch.stack(states), action=actions_t if actions_t is not None else torch.stack(taken),
                  reward=torch.stack(rewards), terminated=terminated, alive=alive_all, members=used)
    return _Rows(out, slot_ids)


def rollout(
    model,
    start_obs: torch.Tensor,
    *,
    actions: torch.Tensor | None = None,
    policy: PolicyFn | None = None,
    horizon: int | None = None,
    reward_fn: StepFn | None = None,
    termination_fn: StepFn | None = None,
    generator: torch.Generator | None = None,
    propagate: Mapping[str, Any] | None = None,
    stop_nonfinite: bool = False,
    record_members: bool = False,
    propagator: Propagator | None = None,
) -> Rollout:
    """Imagine H steps of M trajectories in ``model``, driven by action sequences or by a policy.

    Args:
        model: any :class:`~mbrl_course.models.DynamicsModel` (an ensemble, a delta MLP, the true dynamics, ...).
        start_obs: i_1, ``(M, O)`` (one start per trajectory; repeat a start for several particles).
        actions: u^m_{1:H}, ``(M, H, A)`` (the planners); or None and ``policy``.
        policy: ``obs (M, O) -> action (M, A)``, called every step (Dyna, PILCO, Dreamer); needs ``horizon``.
        horizon: H ≥ 1 for a policy (taken from ``actions`` otherwise).
        reward_fn: the env's batched g(i, u, i') -> ``(M,)``, or None for the model's learned reward.
        termination_fn: the env's batched done(i, u, i') -> ``(M,)`` bool, or None (never terminates).
        generator: for the model's noise and member draws.
        propagate: options of ``model.propagator`` (e.g. ``{"propagation": "ts1", "members": "elites"}``).
        stop_nonfinite: end a trajectory whose predicted step is not finite (that step then does not count).
        record_members: fill :attr:`Rollout.members` (for models with members).
        propagator: one the caller made with ``model.propagator(...)`` (then ``generator`` and ``propagate``
            are not used), e.g. with options that depend on it.
    Returns:
        a :class:`Rollout` with time-major tensors ``(H[+1], M, ·)``. Gradients flow to the policy's and the
        model's parameters unless the caller disabled them.
    """
    if (actions is None) == (policy is None):
        raise ValueError("actions, policy: expected exactly one of an action sequence (M, H, A) or a policy")
    dtype, device = model.dtype, model.device
    start_obs = as_tensor("start_obs", start_obs, dtype=dtype, device=device)
    check_shape("start_obs", start_obs, ("M", model.obs_dim))
    num = start_obs.shape[0]
    if num == 0:
        raise ValueError("start_obs: expected at least one start state, got none")
    if actions is not None:
        actions = as_tensor("actions", actions, dtype=dtype, device=device)
        check_shape("actions", actions, (num, "H", model.act_dim))
        if horizon is not None and horizon != actions.shape[1]:
            raise ValueError(f"horizon: expected None or the actions' H = {actions.shape[1]}, got {horizon}")
        horizon = actions.shape[1]
    if horizon is None:
        raise ValueError("horizon: a policy-driven rollout needs the number of steps H, got None")
    horizon = check_positive_int("horizon", horizon)
    if reward_fn is None and not model.predict_reward:
        raise ValueError("reward_fn: None needs a model that predicts the reward (predict_reward=True); "
                         "pass the environment's batched reward function")
    if propagator is None:
        propagator = model.propagator(generator=generator, **dict(propagate or {}))
    rows = _run(propagator, start_obs, num, horizon, actions=actions, policy=policy, reward_fn=reward_fn,
                termination_fn=termination_fn, stop_nonfinite=stop_nonfinite, record_members=record_members)
    return rows.trajectories(num)
