"""Tests of mbrl_course.envs against the real gymnasium envs and independent physics oracles."""

from __future__ import annotations

import warnings
from functools import cache

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import mbrl_course.envs as envs
from mbrl_course.envs import (
    CARTPOLE_SWINGUP_ID,
    SUPPORTED_ENVS,
    dynamics_fn,
    make_env,
    reward_fn,
    termination_fn,
)

ANALYTIC = ("Pendulum-v1", "MountainCarContinuous-v0", CARTPOLE_SWINGUP_ID)
MUJOCO = ("InvertedPendulum-v5", "HalfCheetah-v5")
N_TRANSITIONS = 400

# Tolerances (atol) of reward / dynamics against the env, per env and dtype of the computation.
# The classic-control envs keep a float64 state but return float32 observations, so a function of
# the observation can only agree up to that rounding; the other envs observe float64.
REWARD_ATOL = {
    ("Pendulum-v1", torch.float64): 5e-6,
    ("Pendulum-v1", torch.float32): 2e-5,
    ("MountainCarContinuous-v0", torch.float64): 1e-10,
    ("MountainCarContinuous-v0", torch.float32): 2e-5,  # 100 - 0.1 u² rounded in float32
    ("InvertedPendulum-v5", torch.float64): 0.0,
    ("InvertedPendulum-v5", torch.float32): 0.0,
    (CARTPOLE_SWINGUP_ID, torch.float64): 1e-12,
    (CARTPOLE_SWINGUP_ID, torch.float32): 2e-6,
}
DYNAMICS_ATOL = {
    ("Pendulum-v1", torch.float64): 5e-6,
    ("Pendulum-v1", torch.float32): 5e-6,
    ("MountainCarContinuous-v0", torch.float64): 5e-7,
    ("MountainCarContinuous-v0", torch.float32): 5e-7,
    (CARTPOLE_SWINGUP_ID, torch.float64): 1e-12,
    (CARTPOLE_SWINGUP_ID, torch.float32): 2e-5,
}
# HalfCheetah-v5 with the default 17-dim observation: the x-position is not observed, the reward's
# forward velocity is approximated (see half_cheetah_reward); bounds on random-action transitions.
HALF_CHEETAH_RMS_TOL = 0.2
HALF_CHEETAH_MAX_TOL = 1.0


# ---------------------------------------------------------------------------------------------
# Recording transitions from the real envs
# ---------------------------------------------------------------------------------------------


def _inject_state(env_id: str, env: gym.Env, rng: np.random.Generator) -> np.ndarray:
    """Put the env in a random state (covering clipping, walls, goal, large angles); return its obs."""
    base = env.unwrapped
    if env_id == "Pendulum-v1":
        base.state = np.array([rng.uniform(-3 * np.pi, 3 * np.pi), rng.uniform(-8.0, 8.0)])
        return base._get_obs()
    if env_id == "MountainCarContinuous-v0":
        low, high = [(-1.2, 0.6), (-1.2, -1.1), (0.35, 0.6)][rng.integers(3)]
        base.state = np.array([rng.uniform(low, high), rng.uniform(-0.07, 0.07)], dtype=np.float32)
        return np.array(base.state, dtype=np.float32)
    if env_id == CARTPOLE_SWINGUP_ID:
        base.state = np.array(
            [rng.uniform(-2, 2), rng.uniform(-5, 5), rng.uniform(-2 * np.pi, 2 * np.pi), rng.uniform(-10, 10)]
        )
        return base._get_obs()
    raise AssertionError(env_id)


@cache
def record(env_id: str, n: int = N_TRANSITIONS, seed: int = 0, **kwargs) -> dict[str, np.ndarray]:
    """n transitions with random actions up to 1.5× outside the action bounds (the envs accept them)."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env(env_id, seed=seed, **kwargs)
        low, high = env.action_space.low, env.action_space.high
        obs, _ = env.reset(seed=seed)
        out = {k: [] for k in ("obs", "action", "reward", "terminated", "next_obs", "x_velocity")}
        for _ in range(n):
            if env_id in ANALYTIC and rng.random() < 0.5:
                obs = _inject_state(env_id, env, rng)
            centre, half = (high + low) / 2, (high - low) / 2
            action = (centre + 1.5 * half * rng.uniform(-1, 1, size=low.shape)).astype(np.float32)
            next_obs, reward, terminated, truncated, info = env.step(action)
            for key, value in zip(
                ("obs", "action", "reward", "terminated", "next_obs", "x_velocity"),
                (obs, action, reward, terminated, next_obs, info.get("x_velocity", np.nan)),
            ):
                out[key].append(np.array(value, copy=True))
            obs = next_obs
            if terminated or truncated:
                obs, _ = env.reset()
        env.close()
    return {k: np.stack(v) for k, v in out.items()}


def _tensors(data: dict, dtype: torch.dtype, shape: tuple[int, ...] | None = None):
    n = data["obs"].shape[0]
    shape = (n,) if shape is None else shape
    t = {k: torch.as_tensor(data[k]).to(dtype) for k in ("obs", "action", "next_obs")}
    return {k: v.reshape(*shape, v.shape[-1]) for k, v in t.items()}


# ---------------------------------------------------------------------------------------------
# reward_fn / termination_fn / dynamics_fn agree with the real envs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("env_id", [e for e in SUPPORTED_ENVS if e != "HalfCheetah-v5"])
def test_reward_and_termination_match_env(env_id, dtype):
    data = record(env_id)
    t = _tensors(data, dtype)
    reward = reward_fn(env_id)(t["obs"], t["action"], t["next_obs"])
    done = termination_fn(env_id)(t["obs"], t["action"], t["next_obs"])
    assert reward.shape == (N_TRANSITIONS,) and reward.dtype == dtype
    assert done.shape == (N_TRANSITIONS,) and done.dtype == torch.bool
    np.testing.assert_array_equal(done.numpy(), data["terminated"])
    np.testing.assert_allclose(reward.double().numpy(), data["reward"], rtol=0, atol=REWARD_ATOL[env_id, dtype])


def test_recordings_cover_the_interesting_cases():
    """The transitions above exercise terminations, clipping and walls (else the checks are weak)."""
    mc = record("MountainCarContinuous-v0")
    assert mc["terminated"].sum() >= 10 and (~mc["terminated"]).sum() >= 10
    assert (np.abs(mc["action"]) > 1).sum() >= 50
    assert ((mc["next_obs"][:, 0] <= -1.2 + 1e-6) & (mc["obs"][:, 1] < 0)).sum() >= 2  # left wall
    ip = record("InvertedPendulum-v5")
    assert ip["terminated"].sum() >= 5
    pend = record("Pendulum-v1")
    assert (np.abs(pend["next_obs"][:, 2]) >= 8.0 - 1e-6).sum() >= 5  # speed clipped
    assert (np.abs(pend["action"]) > 2).sum() >= 50


@pytest.mark.parametrize("env_id", SUPPORTED_ENVS)
def test_functions_keep_extra_leading_dims(env_id):
    data = record(env_id)
    flat = _tensors(data, torch.float64)
    batched = _tensors(data, torch.float64, shape=(4, 2, N_TRANSITIONS // 8))
    fns = [reward_fn(env_id), termination_fn(env_id)]
    for fn in fns:
        expected = fn(flat["obs"], flat["action"], flat["next_obs"])
        got = fn(batched["obs"], batched["action"], batched["next_obs"])
        assert got.shape == (4, 2, N_TRANSITIONS // 8)
        torch.testing.assert_close(got.reshape(-1), expected, rtol=0, atol=0)
    if env_id in ANALYTIC:
        step = dynamics_fn(env_id)
        got = step(batched["obs"], batched["action"])
        assert got.shape == batched["next_obs"].shape
        torch.testing.assert_close(got.reshape(N_TRANSITIONS, -1), step(flat["obs"], flat["action"]))
    # a single transition without batch dims
    r = reward_fn(env_id)(flat["obs"][0], flat["action"][0], flat["next_obs"][0])
    assert r.shape == ()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("env_id", ANALYTIC)
def test_dynamics_fn_matches_env_step(env_id, dtype):
    data = record(env_id)
    t = _tensors(data, dtype)
    next_obs = dynamics_fn(env_id)(t["obs"], t["action"])
    assert next_obs.dtype == dtype and next_obs.shape == t["next_obs"].shape
    np.testing.assert_allclose(
        next_obs.double().numpy(), data["next_obs"], rtol=0, atol=DYNAMICS_ATOL[env_id, dtype]
    )


def test_half_cheetah_reward_within_documented_tolerance():
    data = record("HalfCheetah-v5")
    t = _tensors(data, torch.float64)
    reward = reward_fn("HalfCheetah-v5")(t["obs"], t["action"], t["next_obs"]).numpy()
    err = reward - data["reward"]
    assert np.sqrt(np.mean(err**2)) < HALF_CHEETAH_RMS_TOL
    assert np.abs(err).max() < HALF_CHEETAH_MAX_TOL
    # the control cost uses the raw (unclipped) action, so the error is all in the velocity term
    # (the env sums the squared float32 action in float32: ~1e-7 rounding)
    ctrl = 0.1 * (data["action"].astype(np.float64) ** 2).sum(-1)
    np.testing.assert_allclose(data["reward"], data["x_velocity"] - ctrl, rtol=0, atol=1e-6)
    velocity_err = (reward + ctrl) - data["x_velocity"]
    np.testing.assert_allclose(velocity_err, err, rtol=0, atol=1e-6)
    # and it beats the naive end-of-step velocity by a clear margin
    naive = data["next_obs"][:, 8] - ctrl - data["reward"]
    assert np.sqrt(np.mean(err**2)) < 0.7 * np.sqrt(np.mean(naive**2))
    # float32 agrees with float64
    t32 = _tensors(data, torch.float32)
    r32 = reward_fn("HalfCheetah-v5")(t32["obs"], t32["action"], t32["next_obs"]).double().numpy()
    np.testing.assert_allclose(r32, reward, atol=1e-4)


def test_half_cheetah_reward_exact_with_positions_observed():
    kw = {"exclude_current_positions_from_observation": False}
    data = record("HalfCheetah-v5", 200, 1, **kw)
    assert data["obs"].shape[1] == 18
    t = _tensors(data, torch.float64)
    reward = reward_fn("HalfCheetah-v5", **kw)(t["obs"], t["action"], t["next_obs"]).numpy()
    # exact up to the env's float32 sum of the squared action (~1e-7)
    np.testing.assert_allclose(reward, data["reward"], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"expected shape \(\.\.\., 17\)"):
        reward_fn("HalfCheetah-v5")(t["obs"], t["action"], t["next_obs"])


def test_env_kwargs_are_followed():
    data = record("Pendulum-v1", 100, 2, g=9.81)
    t = _tensors(data, torch.float64)
    np.testing.assert_allclose(dynamics_fn("Pendulum-v1", g=9.81)(t["obs"], t["action"]).numpy(), data["next_obs"], atol=2e-6)
    assert not np.allclose(dynamics_fn("Pendulum-v1")(t["obs"], t["action"]).numpy(), data["next_obs"], atol=1e-4)

    data = record(CARTPOLE_SWINGUP_ID, 100, 3, friction=0.5, pole_length=1.0)
    t = _tensors(data, torch.float64)
    step = dynamics_fn(CARTPOLE_SWINGUP_ID, friction=0.5, pole_length=1.0)
    np.testing.assert_allclose(step(t["obs"], t["action"]).numpy(), data["next_obs"], atol=1e-10)
    reward = reward_fn(CARTPOLE_SWINGUP_ID, friction=0.5, pole_length=1.0)(t["obs"], t["action"], t["next_obs"])
    np.testing.assert_allclose(reward.numpy(), data["reward"], atol=1e-12)

    with pytest.raises(ValueError, match="frame_skip"):
        reward_fn("HalfCheetah-v5", frame_skip=2)
    # keyword arguments that cannot change the functions are accepted
    reward_fn("InvertedPendulum-v5", reset_noise_scale=0.1, max_episode_steps=10, render_mode=None)


def test_mountain_car_and_inverted_pendulum_edge_cases():
    term = termination_fn("InvertedPendulum-v5")
    obs = torch.zeros(3, 4, dtype=torch.float64)
    nxt = torch.tensor([[0.0, 0.1, 0, 0], [0.0, -0.25, 0, 0], [float("nan"), 0.0, 0, 0]], dtype=torch.float64)
    assert term(obs, torch.zeros(3, 1, dtype=torch.float64), nxt).tolist() == [False, True, True]
    # out-of-bounds actions: force is clipped, the action cost is not
    step, reward = dynamics_fn("MountainCarContinuous-v0"), reward_fn("MountainCarContinuous-v0")
    obs = torch.tensor([[-0.5, 0.01]], dtype=torch.float64)
    torch.testing.assert_close(step(obs, torch.tensor([[5.0]], dtype=torch.float64)), step(obs, torch.ones(1, 1, dtype=torch.float64)))
    r = reward(obs, torch.tensor([[5.0]], dtype=torch.float64), obs)
    torch.testing.assert_close(r, torch.tensor([-2.5], dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# The cart-pole swing-up env
# ---------------------------------------------------------------------------------------------


def _lagrangian_rhs(params: envs.CartPoleSwingUpParams, force: float):
    """Independent oracle: M(q) q̈ = τ from the Lagrangian of a cart and a uniform rod (θ from upright).

    L = ½(M+m)ẋ² + ½ m l cos θ ẋ θ̇ + ½ (m l²/3) θ̇² - m g (l/2) cos θ; friction -b ẋ on the cart.
    """
    M, m, l, b, g = params.cart_mass, params.pole_mass, params.pole_length, params.friction, params.gravity

    def rhs(_t, s):
        _, xd, th, thd = s
        mass = np.array([[M + m, 0.5 * m * l * np.cos(th)], [0.5 * m * l * np.cos(th), m * l**2 / 3.0]])
        tau = np.array([force - b * xd + 0.5 * m * l * np.sin(th) * thd**2, 0.5 * m * g * l * np.sin(th)])
        xdd, thdd = np.linalg.solve(mass, tau)
        return [xd, xdd, thd, thdd]

    return rhs


def _one_step_errors(params: envs.CartPoleSwingUpParams, n: int = 20) -> float:
    """Max over random (s, u) of |RK4 step - solve_ivp on the Lagrangian ODE| after one Δt."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for _ in range(n):
        state = np.array([rng.uniform(-1, 1), rng.uniform(-3, 3), rng.uniform(-np.pi, np.pi), rng.uniform(-8, 8)])
        force = rng.uniform(-10, 10)
        ours = np.array(envs.cartpole_step(tuple(state), force, params))
        sol = solve_ivp(
            _lagrangian_rhs(params, force), (0.0, params.dt), state, method="DOP853", rtol=1e-12, atol=1e-12
        )
        worst = max(worst, float(np.abs(ours - sol.y[:, -1]).max()))
    return worst


def test_cartpole_matches_scipy_solve_ivp_on_lagrangian():
    """The RK4 step follows the exact flow of the ODE, and converges to it at 4th order in h."""
    coarse = _one_step_errors(envs.CartPoleSwingUpParams())  # h = 0.02 s
    fine = _one_step_errors(envs.CartPoleSwingUpParams(substeps=20))  # h = 0.005 s
    assert coarse < 1e-4
    assert fine < 1e-6
    assert coarse / fine > 4**4 / 2  # error ∝ h⁴ (a wrong ODE would not converge to the oracle)
    # the force saturates at u_max
    s = (0.0, 0.0, 1.0, 0.0)
    assert envs.cartpole_step(s, 50.0, envs.CartPoleSwingUpParams()) == envs.cartpole_step(
        s, 10.0, envs.CartPoleSwingUpParams()
    )


def test_cartpole_conserves_energy_and_momentum_without_friction():
    """With b = 0 and u = 0: E = T + V and the horizontal momentum are invariants of the true flow."""
    M, m, l, g = 0.5, 0.5, 0.6, 9.82

    def energy(s):
        _, xd, th, thd = s
        kinetic = 0.5 * (M + m) * xd**2 + 0.5 * m * l * np.cos(th) * xd * thd + 0.5 * m * l**2 / 3 * thd**2
        return kinetic + m * g * 0.5 * l * np.cos(th)

    def momentum(s):
        return (M + m) * s[1] + 0.5 * m * l * np.cos(s[2]) * s[3]

    start = (0.0, 0.5, 0.3, 4.0)  # swings over the top: a demanding trajectory
    e0, p0 = energy(start), momentum(start)
    # RK4 is not symplectic: the invariants drift at the integrator's order, far below with 4× smaller h
    for substeps, energy_tol, momentum_tol in ((5, 1e-3, 5e-4), (20, 2e-6, 1e-6)):
        params = envs.CartPoleSwingUpParams(friction=0.0, substeps=substeps)
        s, energies, momenta = start, [], []
        for _ in range(100):  # 10 s
            s = envs.cartpole_step(s, 0.0, params)
            energies.append(energy(s))
            momenta.append(momentum(s))
        assert np.max(np.abs(np.array(energies) - e0)) < energy_tol * abs(e0)
        assert np.max(np.abs(np.array(momenta) - p0)) < momentum_tol * abs(p0)
    # with friction, energy only decreases: dE/dt = -b ẋ²
    params = envs.CartPoleSwingUpParams(friction=0.5)
    s, last = start, e0
    for _ in range(50):
        s = envs.cartpole_step(s, 0.0, params)
        assert energy(s) <= last + 1e-9
        last = energy(s)
    assert last < e0 - 0.1


def test_cartpole_reward_is_tip_distance_to_upright_target():
    env = gym.make(CARTPOLE_SWINGUP_ID).unwrapped
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, th = rng.uniform(-1, 1), rng.uniform(-np.pi, np.pi)
        env.reset(options={"state": [x, 0.0, th, 0.0]})
        _, reward, terminated, truncated, _ = env.step(np.zeros(1, dtype=np.float32))
        xn, _, thn, _ = env.state
        tip, target = np.array([xn + 0.6 * np.sin(thn), 0.6 * np.cos(thn)]), np.array([0.0, 0.6])
        expected = np.exp(-0.5 * np.sum((tip - target) ** 2) / 0.25**2)
        assert reward == pytest.approx(expected, abs=1e-12)
        assert not terminated and not truncated
    env.reset(options={"state": [0.0, 0.0, 0.0, 0.0]})
    assert env.step(np.zeros(1, dtype=np.float32))[1] == pytest.approx(1.0)



def test_cartpole_reward_reads_predicted_observations_as_an_angle():
    """A model's (cos θ, sin θ) is off the unit circle: the reward reads atan2 of it and stays in [0, 1]."""
    def r(next_obs):
        return reward_fn(CARTPOLE_SWINGUP_ID)(torch.zeros_like(next_obs), torch.zeros_like(next_obs[..., :1]), next_obs)

    on_circle = torch.tensor([[0.3, 0.0, np.cos(0.4), np.sin(0.4), 0.0]], dtype=torch.float64)
    scaled = on_circle.clone()
    scaled[:, 2:4] *= 3.0  # same angle, three times the radius
    torch.testing.assert_close(r(scaled), r(on_circle), rtol=0, atol=1e-12)
    wild = torch.tensor([[0.0, 0.0, 50.0, 0.0, 0.0], [1e30, 0.0, 1.0, -1.0, 0.0], [-1e30, 0.0, -7.0, 2.0, 0.0]])
    reward = r(wild)
    assert torch.isfinite(reward).all() and (reward >= 0).all() and (reward <= 1).all()
    assert float(reward[0]) == pytest.approx(1.0) and float(reward[1]) == 0.0

def test_cartpole_passes_check_env():
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make(CARTPOLE_SWINGUP_ID, render_mode="rgb_array")
        check_env(env.unwrapped)
    assert env.unwrapped.metadata["render_fps"] == 10
    assert env.action_space == gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
    assert env.observation_space.shape == (5,)


def test_cartpole_start_time_limit_and_determinism():
    starts = np.stack([make_env(CARTPOLE_SWINGUP_ID).reset(seed=s)[0] for s in range(300)])
    theta = np.arctan2(starts[:, 3], starts[:, 2]) % (2 * np.pi)  # near π: hanging down
    assert abs(theta.mean() - np.pi) < 0.03 and 0.08 < theta.std() < 0.12
    assert abs(starts[:, 0].mean()) < 0.03 and 0.08 < starts[:, 0].std() < 0.12

    def rollout(seed):
        env = make_env(CARTPOLE_SWINGUP_ID, seed=seed)
        obs, _ = env.reset()
        trace, steps, truncated = [obs], 0, False
        while not truncated:
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            trace.append(obs)
            steps += 1
            assert not terminated
        return np.stack(trace), steps

    a, steps = rollout(7)
    b, _ = rollout(7)
    c, _ = rollout(8)
    assert steps == envs.CARTPOLE_SWINGUP_MAX_EPISODE_STEPS == 100
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_cartpole_renders_rgb_array():
    env = make_env(CARTPOLE_SWINGUP_ID, render_mode="rgb_array")
    pole_colour = np.array([205, 140, 60], dtype=np.uint8)
    rows = {}
    for name, theta in (("up", 0.0), ("down", np.pi)):
        env.reset(options={"state": [0.0, 0.0, theta, 0.0]})
        image = env.render()
        assert image.shape == (400, 600, 3) and image.dtype == np.uint8
        pole = np.all(image == pole_colour, axis=-1)
        assert pole.sum() > 50
        rows[name] = np.nonzero(pole)[0].mean()
        cols = np.nonzero(pole)[1].mean()
        assert abs(cols - 300) < 5  # the cart is at x = 0, the centre of the view
    assert rows["up"] < 250 < rows["down"]  # image rows grow downwards; the track is row 250
    assert make_env(CARTPOLE_SWINGUP_ID).unwrapped.render_mode is None


# ---------------------------------------------------------------------------------------------
# Errors a student can act on
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [make_env, reward_fn, termination_fn, dynamics_fn])
def test_unknown_env_id_lists_supported(factory):
    with pytest.raises(ValueError, match=r"env_id: expected one of .*'Pendulum-v1'.*CartPoleSwingUp-v0.*got 'CartPole-v1'"):
        factory("CartPole-v1")


@pytest.mark.parametrize("env_id", MUJOCO)
def test_dynamics_fn_refuses_mujoco(env_id):
    with pytest.raises(ValueError, match="MuJoCo.*dynamics_fn supports 'Pendulum-v1'"):
        dynamics_fn(env_id)


def test_make_env_refuses_non_box_or_unbounded_actions(monkeypatch):
    from mbrl_course.envs import registry

    monkeypatch.setattr(registry, "SUPPORTED_ENVS", (*SUPPORTED_ENVS, "CartPole-v1"))
    with pytest.raises(ValueError, match="expected a continuous action space.*Discrete"):
        make_env("CartPole-v1")

    class Unbounded(gym.Env):
        action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    with pytest.raises(ValueError, match="finite bounds on both sides"):
        envs.check_bounded_box_actions(Unbounded())
    for env_id in SUPPORTED_ENVS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = make_env(env_id)
        assert isinstance(env.action_space, gym.spaces.Box)
        env.close()


def test_bad_tensors_are_refused():
    fn = reward_fn("Pendulum-v1")
    o, a = torch.zeros(5, 3), torch.zeros(5, 1)
    with pytest.raises(ValueError, match=r"obs: expected shape \(\.\.\., 3\), got \(5, 4\)"):
        fn(torch.zeros(5, 4), a, o)
    with pytest.raises(ValueError, match=r"action: expected shape \(5, 1\), got \(4, 1\)"):
        fn(o, torch.zeros(4, 1), o)  # no silent broadcasting
    with pytest.raises(ValueError, match=r"next_obs: expected shape \(5, 3\)"):
        fn(o, a, torch.zeros(1, 3))
    with pytest.raises(TypeError, match="floating"):
        fn(o, torch.zeros(5, 1, dtype=torch.long), o)
    with pytest.raises(TypeError, match="expected \\(obs, action, next_obs\\)"):
        fn(o, a)
    with pytest.raises(ValueError, match="init_std|pole_length"):
        envs.CartPoleSwingUpEnv(pole_length=-1.0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("env_id", SUPPORTED_ENVS)
def test_functions_run_on_cuda(env_id):
    data = record(env_id)
    cpu = _tensors(data, torch.float32, shape=(8, N_TRANSITIONS // 8))
    gpu = {k: v.cuda() for k, v in cpu.items()}
    for factory in (reward_fn, termination_fn):
        fn = factory(env_id)
        out = fn(gpu["obs"], gpu["action"], gpu["next_obs"])
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), fn(cpu["obs"], cpu["action"], cpu["next_obs"]), rtol=1e-5, atol=1e-5)
    if env_id in ANALYTIC:
        step = dynamics_fn(env_id)
        out = step(gpu["obs"], gpu["action"])
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), step(cpu["obs"], cpu["action"]), rtol=1e-4, atol=1e-4)
