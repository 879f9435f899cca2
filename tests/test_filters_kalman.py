"""Kalman filter, RTS smoother, parallel-in-time versions and k-step prediction.

Oracles: the joint Gaussian of the stacked states and observations (built in numpy/scipy,
independent of the filters), the block-tridiagonal posterior precision, filterpy and pykalman.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from mbrl_course.filters import (
    LinearGaussianSSM,
    kalman_filter,
    parallel_kalman_filter,
    parallel_rts_smoother,
    predict,
    rts_smoother,
    update_step,
)

F64 = torch.float64


def sequential_kalman_filter(*args, **kwargs):
    """kalman_filter's own loop over predict_step / update_step, whatever ``method="auto"`` would choose."""
    return kalman_filter(*args, method="sequential", **kwargs)


def spd(rng: np.random.Generator, n: int, scale: float = 1.0, floor: float = 0.3) -> np.ndarray:
    A = rng.normal(size=(n, n))
    return scale * (A @ A.T / n + floor * np.eye(n))


def random_model(rng, dx, dy, T, du=0, time_varying=True):
    """A random linear-Gaussian model as numpy arrays; matrices with a leading T axis when time-varying."""
    def stack(fn):
        return np.stack([fn() for _ in range(T)]) if time_varying else fn()

    model = dict(
        initial_mean=rng.normal(size=dx),
        initial_cov=spd(rng, dx),
        transition_matrix=stack(lambda: 0.9 * np.linalg.qr(rng.normal(size=(dx, dx)))[0] * rng.uniform(0.6, 1.0)),
        transition_cov=stack(lambda: spd(rng, dx, 0.3)),
        emission_matrix=stack(lambda: rng.normal(size=(dy, dx))),
        emission_cov=stack(lambda: spd(rng, dy, 0.5)),
    )
    if du:
        model["controls"] = rng.normal(size=(T, du))
        model["control_matrix"] = stack(lambda: rng.normal(size=(dx, du)))
    return model


def at(x: np.ndarray, t: int, T: int, fixed_ndim: int = 2) -> np.ndarray:
    """Step t (0-based) of a fixed or time-varying numpy matrix."""
    return x if x.ndim == fixed_ndim else x[t]


def joint_gaussian(model: dict, T: int):
    """Mean and covariance of the stacked (s_0, s_1, ..., s_T, y_1, ..., y_T), by the linear map from the noises.

    s_t = E_t s_{t-1} + B u_t + w_t, y_t = C_t s_t + v_t: z = M ξ + offsets, with ξ = (s_0, w_1..w_T).
    """
    dx = model["initial_mean"].shape[0]
    dy = at(model["emission_matrix"], 0, T).shape[0]
    n = (T + 1) * dx
    M = np.zeros((n, n))
    mean = np.zeros(n)
    mean[:dx] = model["initial_mean"]
    Q = np.zeros((n, n))
    Q[:dx, :dx] = model["initial_cov"]
    M[:dx, :dx] = np.eye(dx)
    for t in range(1, T + 1):
        E = at(model["transition_matrix"], t - 1, T)
        rows = slice(t * dx, (t + 1) * dx)
        prev = slice((t - 1) * dx, t * dx)
        M[rows] = E @ M[prev]
        M[rows, rows] += np.eye(dx)
        mean[rows] = E @ mean[prev]
        if "controls" in model:
            mean[rows] += at(model["control_matrix"], t - 1, T) @ model["controls"][t - 1]
        Q[rows, rows] = at(model["transition_cov"], t - 1, T)
    cov_s = M @ Q @ M.T
    H = np.zeros((T * dy, n))
    R = np.zeros((T * dy, T * dy))
    for t in range(1, T + 1):
        H[(t - 1) * dy : t * dy, t * dx : (t + 1) * dx] = at(model["emission_matrix"], t - 1, T)
        R[(t - 1) * dy : t * dy, (t - 1) * dy : t * dy] = at(model["emission_cov"], t - 1, T)
    mean_y = H @ mean
    cov_y = H @ cov_s @ H.T + R
    cov_sy = cov_s @ H.T
    full_mean = np.concatenate([mean, mean_y])
    full_cov = np.block([[cov_s, cov_sy], [cov_sy.T, cov_y]])
    return full_mean, full_cov, n


def to_torch(model: dict, dtype=F64) -> dict:
    return {k: torch.tensor(v, dtype=dtype) for k, v in model.items()}


def call(fn, y, model: dict, dtype=F64):
    tm = to_torch(model, dtype)
    return fn(torch.as_tensor(y, dtype=dtype), tm["initial_mean"], tm["initial_cov"], tm["transition_matrix"],
              tm["transition_cov"], tm["emission_matrix"], tm["emission_cov"], tm.get("controls"),
              tm.get("control_matrix"))


def simulate(rng, model: dict, T: int) -> np.ndarray:
    """Y_{1:T} drawn by running the model forward in numpy."""
    s = rng.multivariate_normal(model["initial_mean"], model["initial_cov"])
    ys = []
    for t in range(T):
        s = at(model["transition_matrix"], t, T) @ s
        if "controls" in model:
            s = s + at(model["control_matrix"], t, T) @ model["controls"][t]
        s = s + rng.multivariate_normal(np.zeros(len(s)), at(model["transition_cov"], t, T))
        C, D = at(model["emission_matrix"], t, T), at(model["emission_cov"], t, T)
        ys.append(C @ s + rng.multivariate_normal(np.zeros(len(D)), D))
    return np.array(ys)


def sample_with_nans(rng, model, T, dy, frac=0.3, full_rows=(2,)):
    y = simulate(rng, model, T)
    y[rng.uniform(size=y.shape) < frac] = np.nan
    for t in full_rows:
        y[t] = np.nan
    return y


@pytest.mark.parametrize("filter_fn", [sequential_kalman_filter, parallel_kalman_filter])
@pytest.mark.parametrize("du", [0, 2])
def test_log_likelihood_equals_joint_gaussian_density_with_nans(filter_fn, du):
    rng = np.random.default_rng(0 + du)
    T, dx, dy = 9, 3, 3
    for _ in range(3):
        model = random_model(rng, dx, dy, T, du=du, time_varying=True)
        y = sample_with_nans(rng, model, T, dy)
        mean, cov, n = joint_gaussian(model, T)
        observed = ~np.isnan(y.reshape(-1))
        oracle = scipy.stats.multivariate_normal(mean[n:][observed], cov[n:, n:][np.ix_(observed, observed)]).logpdf(
            y.reshape(-1)[observed]
        )
        res = call(filter_fn, y, model)
        np.testing.assert_allclose(res.log_likelihood.numpy(), oracle, rtol=1e-8)
        assert res.step_log_likelihoods[2].item() == 0.0  # the all-NaN y_3
        # the contract's shapes
        assert res.filtered_means.shape == (T, dx) and res.filtered_covs.shape == (T, dx, dx)
        assert res.predicted_means.shape == (T, dx) and res.predicted_covs.shape == (T, dx, dx)
        assert res.log_likelihood.shape == ()


def test_filtered_moments_equal_joint_gaussian_conditionals():
    """m_t, S_t = moments of s_t given the observed entries of y_1..y_t, by Gaussian conditioning."""
    rng = np.random.default_rng(1)
    T, dx, dy = 6, 2, 3
    model = random_model(rng, dx, dy, T, du=1)
    y = sample_with_nans(rng, model, T, dy, full_rows=(1,))
    mean, cov, n = joint_gaussian(model, T)
    res = call(kalman_filter, y, model)
    for t in range(1, T + 1):
        obs_idx = np.array([n + i for i in range(t * dy) if not np.isnan(y.reshape(-1)[i])], dtype=int)
        s_idx = np.arange(t * dx, (t + 1) * dx)
        prev_obs = np.array([i for i in obs_idx if i < n + (t - 1) * dy], dtype=int)
        for idx, m_test, S_test in (
            (obs_idx, res.filtered_means[t - 1], res.filtered_covs[t - 1]),
            (prev_obs, res.predicted_means[t - 1], res.predicted_covs[t - 1]),
        ):
            if len(idx):
                gain = np.linalg.solve(cov[np.ix_(idx, idx)], cov[np.ix_(idx, s_idx)]).T
                m = mean[s_idx] + gain @ (y.reshape(-1)[idx - n] - mean[idx])
                S = cov[np.ix_(s_idx, s_idx)] - gain @ cov[np.ix_(idx, s_idx)]
            else:
                m, S = mean[s_idx], cov[np.ix_(s_idx, s_idx)]
            np.testing.assert_allclose(m_test.numpy(), m, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(S_test.numpy(), S, rtol=1e-8, atol=1e-10)


def posterior_by_precision(model: dict, y: np.ndarray, T: int):
    """Exact p(s_{0:T} | Y) from the block-tridiagonal precision J and information vector h."""
    dx = model["initial_mean"].shape[0]
    n = (T + 1) * dx
    J = np.zeros((n, n))
    h = np.zeros(n)
    S0inv = np.linalg.inv(model["initial_cov"])
    J[:dx, :dx] += S0inv
    h[:dx] += S0inv @ model["initial_mean"]
    for t in range(1, T + 1):
        E = at(model["transition_matrix"], t - 1, T)
        Finv = np.linalg.inv(at(model["transition_cov"], t - 1, T))
        c = at(model["control_matrix"], t - 1, T) @ model["controls"][t - 1] if "controls" in model else np.zeros(dx)
        cur, prev = slice(t * dx, (t + 1) * dx), slice((t - 1) * dx, t * dx)
        J[cur, cur] += Finv
        J[prev, prev] += E.T @ Finv @ E
        J[cur, prev] -= Finv @ E
        J[prev, cur] -= E.T @ Finv
        h[cur] += Finv @ c
        h[prev] -= E.T @ Finv @ c
        obs = ~np.isnan(y[t - 1])
        if obs.any():
            C = at(model["emission_matrix"], t - 1, T)[obs]
            Doo = at(model["emission_cov"], t - 1, T)[np.ix_(obs, obs)]
            J[cur, cur] += C.T @ np.linalg.solve(Doo, C)
            h[cur] += C.T @ np.linalg.solve(Doo, y[t - 1][obs])
    cov = np.linalg.inv(J)
    return cov @ h, cov


@pytest.mark.parametrize("smoother", [rts_smoother, parallel_rts_smoother])
def test_smoother_equals_block_tridiagonal_posterior(smoother):
    rng = np.random.default_rng(2)
    T, dx, dy = 8, 3, 2
    model = random_model(rng, dx, dy, T, du=2)
    y = sample_with_nans(rng, model, T, dy, full_rows=(0, 5))
    mean, cov = posterior_by_precision(model, y, T)
    res = call(smoother, y, model)
    np.testing.assert_allclose(res.smoothed_initial_mean.numpy(), mean[:dx], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.smoothed_initial_cov.numpy(), cov[:dx, :dx], rtol=1e-8, atol=1e-10)
    for t in range(1, T + 1):
        cur, prev = slice(t * dx, (t + 1) * dx), slice((t - 1) * dx, t * dx)
        np.testing.assert_allclose(res.smoothed_means[t - 1].numpy(), mean[cur], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(res.smoothed_covs[t - 1].numpy(), cov[cur, cur], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(res.smoothed_cross_covs[t - 1].numpy(), cov[cur, prev], rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("T", [1, 2, 3, 7, 64, 101])
def test_parallel_equals_sequential_batched(T):
    rng = np.random.default_rng(T)
    dx, dy, du, B = 3, 2, 1, 4
    models = [random_model(rng, dx, dy, T, du=du) for _ in range(B)]
    stacked = {k: np.stack([m[k] for m in models]) for k in models[0]}
    ys = np.stack([sample_with_nans(rng, m, T, dy, full_rows=(0,) if T > 2 else ()) for m in models])
    seq = call(sequential_kalman_filter, ys, stacked)
    par = call(parallel_kalman_filter, ys, stacked)
    for name in ("filtered_means", "filtered_covs", "predicted_means", "predicted_covs", "predicted_obs_means",
                 "predicted_obs_covs", "step_log_likelihoods", "log_likelihood"):
        torch.testing.assert_close(getattr(par, name), getattr(seq, name), rtol=1e-9, atol=1e-10, msg=name)
    s_seq = call(rts_smoother, ys, stacked)
    s_par = call(parallel_rts_smoother, ys, stacked)
    for name in ("smoothed_means", "smoothed_covs", "smoothed_cross_covs", "smoothed_initial_mean",
                 "smoothed_initial_cov"):
        torch.testing.assert_close(getattr(s_par, name), getattr(s_seq, name), rtol=1e-9, atol=1e-10, msg=name)
    # each batch entry equals its own unbatched run
    one = call(sequential_kalman_filter, ys[1], models[1])
    torch.testing.assert_close(seq.filtered_means[1], one.filtered_means, rtol=1e-12, atol=1e-12)


def test_parallel_equals_sequential_with_model_shared_across_a_data_batch():
    """One model (unbatched E, F, C, D, S_0, B) for a batch of data (m_0, u_t, y_t with NaNs batched)."""
    rng = np.random.default_rng(21)
    T, dx, dy, du = 33, 3, 2, 2
    model = random_model(rng, dx, dy, T, du=du, time_varying=False)
    model["initial_mean"] = rng.normal(size=(5, dx))
    model["controls"] = rng.normal(size=(3, 5, T, du))
    ys = rng.normal(size=(3, 5, T, dy))
    ys[0, 1, 4] = np.nan
    ys[2, 3, 7:9, 0] = np.nan
    for seq, par in ((sequential_kalman_filter, parallel_kalman_filter), (rts_smoother, parallel_rts_smoother)):
        a, b = call(seq, ys, model), call(par, ys, model)
        for name, value in vars(a).items():
            if isinstance(value, torch.Tensor):
                assert getattr(b, name).shape == value.shape, name
                torch.testing.assert_close(getattr(b, name), value, rtol=1e-9, atol=1e-10, msg=name)
    fully_observed = call(parallel_kalman_filter, np.nan_to_num(ys), model)
    torch.testing.assert_close(fully_observed.log_likelihood, call(sequential_kalman_filter, np.nan_to_num(ys), model).log_likelihood,
                               rtol=1e-10, atol=1e-10)


def test_fixed_matrices_broadcast_over_batch_and_time():
    rng = np.random.default_rng(3)
    T, dx, dy = 20, 2, 2
    model = random_model(rng, dx, dy, T, time_varying=False)
    ys = rng.normal(size=(3, 5, T, dy))
    res = call(kalman_filter, ys, model)
    assert res.filtered_means.shape == (3, 5, T, dx) and res.log_likelihood.shape == (3, 5)
    # the same model written out time-varying gives the same numbers
    tv = {k: (np.broadcast_to(v, (T,) + v.shape).copy() if k.startswith(("transition", "emission")) else v)
          for k, v in model.items()}
    torch.testing.assert_close(call(parallel_kalman_filter, ys, tv).log_likelihood, res.log_likelihood,
                               rtol=1e-10, atol=1e-10)
    # a batch of fixed matrices goes in with a time axis of size 1
    E = torch.tensor(model["transition_matrix"]).expand(5, 1, dx, dx)
    tm = to_torch(model)
    res2 = kalman_filter(torch.tensor(ys), tm["initial_mean"], tm["initial_cov"], E, tm["transition_cov"],
                         tm["emission_matrix"], tm["emission_cov"])
    torch.testing.assert_close(res2.log_likelihood, res.log_likelihood, rtol=1e-12, atol=1e-12)


def test_filtering_versus_prediction():
    """Changing y_t leaves p(s_t | Y_{1:t-1}) unchanged but moves p(s_t | Y_{1:t})."""
    rng = np.random.default_rng(4)
    T, dx, dy, t = 12, 3, 2, 6
    model = random_model(rng, dx, dy, T)
    y = rng.normal(size=(T, dy))
    y2 = y.copy()
    y2[t] += 5.0
    for fn in (sequential_kalman_filter, parallel_kalman_filter):
        a, b = call(fn, y, model), call(fn, y2, model)
        torch.testing.assert_close(a.predicted_means[: t + 1], b.predicted_means[: t + 1], rtol=0, atol=1e-12)
        torch.testing.assert_close(a.predicted_covs[: t + 1], b.predicted_covs[: t + 1], rtol=0, atol=1e-12)
        assert (a.filtered_means[t] - b.filtered_means[t]).abs().max() > 1e-3
        assert (a.predicted_means[t + 1] - b.predicted_means[t + 1]).abs().max() > 1e-3


def test_update_step_equals_slide_information_form():
    """Joseph-form update = S_t = (Σ⁻¹ + CᵀD⁻¹C)⁻¹, m_t = S_t(CᵀD⁻¹y + Σ⁻¹μ) of the slide."""
    rng = np.random.default_rng(5)
    dx, dy = 4, 3
    mu, Sigma = rng.normal(size=dx), spd(rng, dx)
    C, D, y = rng.normal(size=(dy, dx)), spd(rng, dy), rng.normal(size=dy)
    S = np.linalg.inv(np.linalg.inv(Sigma) + C.T @ np.linalg.solve(D, C))
    m = S @ (C.T @ np.linalg.solve(D, y) + np.linalg.solve(Sigma, mu))
    ll = scipy.stats.multivariate_normal(C @ mu, D + C @ Sigma @ C.T).logpdf(y)
    m_t, S_t, ll_t = update_step(*(torch.tensor(a) for a in (mu, Sigma, y, C, D)))
    np.testing.assert_allclose(m_t.numpy(), m, rtol=1e-10)
    np.testing.assert_allclose(S_t.numpy(), S, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ll_t.numpy(), ll, rtol=1e-10)


@pytest.mark.parametrize("K", [1, 4])
def test_k_step_prediction_equals_joint_gaussian(K):
    rng = np.random.default_rng(6)
    T, dx, dy = 7, 3, 2
    model = random_model(rng, dx, dy, T + K, time_varying=False)
    mean, cov, n = joint_gaussian(model, T + K)
    y = simulate(rng, model, T)
    res = call(kalman_filter, y, model)
    tm = to_torch(model)
    pred = predict(res.filtered_means[-1], res.filtered_covs[-1], tm["transition_matrix"], tm["transition_cov"],
                   tm["emission_matrix"], tm["emission_cov"], K)
    obs = np.arange(n, n + T * dy)
    for k in range(1, K + 1):
        for idx, m_test, S_test in (
            (np.arange(n + (T + k - 1) * dy, n + (T + k) * dy), pred.obs_means[k - 1], pred.obs_covs[k - 1]),
            (np.arange((T + k) * dx, (T + k + 1) * dx), pred.state_means[k - 1], pred.state_covs[k - 1]),
        ):
            gain = np.linalg.solve(cov[np.ix_(obs, obs)], cov[np.ix_(obs, idx)]).T
            np.testing.assert_allclose(m_test.numpy(), mean[idx] + gain @ (y.reshape(-1) - mean[obs]), rtol=1e-8,
                                       atol=1e-10)
            np.testing.assert_allclose(S_test.numpy(), cov[np.ix_(idx, idx)] - gain @ cov[np.ix_(obs, idx)],
                                       rtol=1e-8, atol=1e-10)


def test_ssm_container_sample_filter_predict_smoke():
    rng = np.random.default_rng(7)
    T, dx, dy = 30, 2, 2
    m = to_torch(random_model(rng, dx, dy, T, du=1, time_varying=False))
    ssm = LinearGaussianSSM(m["initial_mean"], m["initial_cov"], m["transition_matrix"], m["transition_cov"],
                            m["emission_matrix"], m["emission_cov"], m["control_matrix"])
    gen = torch.Generator().manual_seed(0)
    states, obs = ssm.sample(T, sample_shape=(4,), controls=m["controls"], generator=gen)
    assert states.shape == (4, T, dx) and obs.shape == (4, T, dy)
    states2, _ = ssm.sample(T, sample_shape=(4,), controls=m["controls"], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(states, states2, rtol=0, atol=0)
    res = ssm.filter(obs, controls=m["controls"])
    torch.testing.assert_close(ssm.filter(obs, controls=m["controls"], parallel=True).log_likelihood,
                               res.log_likelihood)
    pred = ssm.predict(res, 3)
    assert pred.obs_means.shape == (4, 3, dy)


def test_sampling_moments_match_joint_gaussian():
    """Monte Carlo: the sampler's mean and covariance of y_{1:T} match the joint Gaussian."""
    rng = np.random.default_rng(8)
    T, dx, dy = 4, 2, 1
    model = random_model(rng, dx, dy, T, du=1)
    m = to_torch(model)
    ssm = LinearGaussianSSM(m["initial_mean"], m["initial_cov"], m["transition_matrix"], m["transition_cov"],
                            m["emission_matrix"], m["emission_cov"], m["control_matrix"])
    _, obs = ssm.sample(T, sample_shape=(200_000,), controls=m["controls"], generator=torch.Generator().manual_seed(1))
    mean, cov, n = joint_gaussian(model, T)
    flat = obs.reshape(200_000, -1).numpy()
    sd = np.sqrt(np.diag(cov[n:, n:]))
    np.testing.assert_allclose(flat.mean(0), mean[n:], atol=5 * sd.max() / np.sqrt(200_000))
    np.testing.assert_allclose(np.cov(flat.T), cov[n:, n:], atol=0.02 * sd.max() ** 2)


def _cv_model(dt=1.0, q=0.05, r=0.5):
    E = np.eye(4)
    E[0, 2] = E[1, 3] = dt
    G = np.array([[dt**2 / 2, 0], [0, dt**2 / 2], [dt, 0], [0, dt]])
    F = q * G @ G.T + 1e-6 * np.eye(4)
    C = np.zeros((2, 4))
    C[0, 0] = C[1, 1] = 1
    return dict(initial_mean=np.array([0.0, 0.0, 1.0, 0.5]), initial_cov=np.eye(4), transition_matrix=E,
                transition_cov=F, emission_matrix=C, emission_cov=r * np.eye(2))


def test_agrees_with_filterpy_class_api():
    from filterpy.kalman import KalmanFilter
    from filterpy.kalman import rts_smoother as fp_rts

    rng = np.random.default_rng(9)
    model = _cv_model()
    T = 60
    y = simulate(rng, model, T)
    kf = KalmanFilter(dim_x=4, dim_z=2)
    kf.x = model["initial_mean"].copy()
    kf.P = model["initial_cov"].copy()
    kf.F, kf.Q, kf.H, kf.R = (model[k] for k in ("transition_matrix", "transition_cov", "emission_matrix",
                                                  "emission_cov"))
    ll, xs, Ps, xp, Pp = 0.0, [], [], [], []
    for t in range(T):
        kf.predict()
        xp.append(kf.x_prior.copy())
        Pp.append(kf.P_prior.copy())
        kf.update(y[t])
        ll += kf.log_likelihood
        xs.append(kf.x.copy())
        Ps.append(kf.P.copy())
    for fn in (sequential_kalman_filter, parallel_kalman_filter):
        res = call(fn, y, model)
        np.testing.assert_allclose(res.filtered_means.numpy(), np.array(xs), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(res.filtered_covs.numpy(), np.array(Ps), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(res.predicted_means.numpy(), np.array(xp), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(res.predicted_covs.numpy(), np.array(Pp), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(res.log_likelihood.numpy(), ll, rtol=1e-9)
    xs_s, Ps_s, _, _ = fp_rts(np.array(xs), np.array(Ps), [model["transition_matrix"]] * T,
                              [model["transition_cov"]] * T)
    sm = call(rts_smoother, y, model)
    np.testing.assert_allclose(sm.smoothed_means.numpy(), xs_s, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(sm.smoothed_covs.numpy(), Ps_s, rtol=1e-8, atol=1e-10)


def test_agrees_with_pykalman_including_missing_rows():
    from pykalman import KalmanFilter as PyKF

    rng = np.random.default_rng(10)
    model = _cv_model(dt=0.5)
    T = 50
    y = simulate(rng, model, T)
    E, F, S0, m0 = (model[k] for k in ("transition_matrix", "transition_cov", "initial_cov", "initial_mean"))
    # pykalman's initial state is s_1 without a prediction before y_1: give it p(s_1) = N(E m_0, E S_0 Eᵀ + F)
    pk = PyKF(transition_matrices=E, observation_matrices=model["emission_matrix"], transition_covariance=F,
              observation_covariance=model["emission_cov"], initial_state_mean=E @ m0,
              initial_state_covariance=E @ S0 @ E.T + F)
    res = call(kalman_filter, y, model)
    np.testing.assert_allclose(res.log_likelihood.numpy(), pk.loglikelihood(y), rtol=1e-9)
    y_missing = y.copy()
    y_missing[[3, 17, 18]] = np.nan
    fm, fc = pk.filter(np.ma.masked_invalid(y_missing))
    sm_m, sm_c = pk.smooth(np.ma.masked_invalid(y_missing))
    res = call(kalman_filter, y_missing, model)
    np.testing.assert_allclose(res.filtered_means.numpy(), fm, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(res.filtered_covs.numpy(), fc, rtol=1e-8, atol=1e-10)
    sm = call(parallel_rts_smoother, y_missing, model)
    np.testing.assert_allclose(sm.smoothed_means.numpy(), sm_m, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(sm.smoothed_covs.numpy(), sm_c, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("fn", [sequential_kalman_filter, parallel_kalman_filter])
def test_all_nan_sequence_gives_prior_predictions_and_zero_log_likelihood(fn):
    rng = np.random.default_rng(11)
    T, dx, dy = 10, 2, 3
    model = random_model(rng, dx, dy, T, du=1)
    y = np.full((T, dy), np.nan)
    res = call(fn, y, model)
    assert res.log_likelihood.item() == 0.0
    mean, cov, n = joint_gaussian(model, T)
    for t in range(1, T + 1):
        idx = slice(t * dx, (t + 1) * dx)
        np.testing.assert_allclose(res.filtered_means[t - 1].numpy(), mean[idx], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.predicted_covs[t - 1].numpy(), cov[idx, idx], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(res.filtered_covs, res.predicted_covs)
    for field in ("filtered_means", "filtered_covs", "predicted_obs_covs", "step_log_likelihoods"):
        assert torch.isfinite(getattr(res, field)).all()


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(12)
    T = 200
    model = _cv_model()
    y = simulate(rng, model, T)
    for fn in (sequential_kalman_filter, parallel_kalman_filter):
        r64 = call(fn, y, model, F64)
        r32 = call(fn, y, model, torch.float32)
        assert r32.log_likelihood.dtype == torch.float32
        np.testing.assert_allclose(r32.log_likelihood.item(), r64.log_likelihood.item(), rtol=1e-4)
        np.testing.assert_allclose(r32.filtered_means.double().numpy(), r64.filtered_means.numpy(), atol=2e-3)


@pytest.mark.slow
def test_covariances_stay_symmetric_positive_definite_over_1e5_steps_float32():
    """Joseph form in float32: S_t stays SPD over 10^5 steps of a badly scaled model (tiny F, tiny D, fast dynamics)."""
    T = 100_000
    dt = 1.0
    E = torch.tensor([[1.0, dt], [0.0, 1.0]], dtype=torch.float32)
    F = torch.tensor([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]], dtype=torch.float32) * 1e-6
    C = torch.tensor([[1.0, 0.0]], dtype=torch.float32)
    D = torch.tensor([[1e-4]], dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    y = torch.cumsum(torch.randn(T, 1, generator=gen) * 1e-2, 0).to(torch.float32)
    m0, S0 = torch.zeros(2), torch.eye(2) * 1e3
    for fn in (sequential_kalman_filter, parallel_kalman_filter):
        res = fn(y, m0, S0, E, F, C, D)
        S = res.filtered_covs.double()
        assert torch.isfinite(res.filtered_means).all() and torch.isfinite(res.log_likelihood)
        assert torch.equal(res.filtered_covs, res.filtered_covs.mT)
        assert (torch.linalg.eigvalsh(S).min(-1).values > 0).all()
    ref = kalman_filter(y[-2000:].double(), res.filtered_means[-2001].double(), res.filtered_covs[-2001].double(),
                        E.double(), F.double(), C.double(), D.double())
    # the float32 recursion has not drifted from a float64 run over the last 2000 steps
    np.testing.assert_allclose(res.filtered_covs[-1].double().numpy(), ref.filtered_covs[-1].numpy(), rtol=5e-3)


class TestBadInput:
    def args(self, **over):
        T, dx, dy = 5, 2, 2
        base = dict(
            observations=torch.zeros(T, dy, dtype=F64),
            initial_mean=torch.zeros(dx, dtype=F64),
            initial_cov=torch.eye(dx, dtype=F64),
            transition_matrix=torch.eye(dx, dtype=F64),
            transition_cov=torch.eye(dx, dtype=F64),
            emission_matrix=torch.eye(dy, dx, dtype=F64),
            emission_cov=torch.eye(dy, dtype=F64),
        )
        base.update(over)
        return base

    @pytest.mark.parametrize("fn", [kalman_filter, parallel_kalman_filter, rts_smoother, parallel_rts_smoother])
    @pytest.mark.parametrize(
        "override, error, words",
        [
            (dict(emission_cov=torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=F64)), ValueError, "emission_cov"),
            (dict(transition_cov=torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)), ValueError, "transition_cov"),
            (dict(emission_cov=torch.zeros(2, 2, dtype=F64)), ValueError, "positive-definite"),
            (dict(initial_cov=-torch.eye(2, dtype=F64)), ValueError, "initial_cov"),
            (dict(emission_matrix=torch.eye(3, 2, dtype=F64)), ValueError, "emission_matrix"),
            (dict(transition_matrix=torch.eye(3, dtype=F64)), ValueError, "transition_matrix"),
            (dict(transition_matrix=torch.eye(2, dtype=F64).expand(4, 2, 2)), ValueError, "time axis"),
            (dict(observations=torch.zeros(0, 2, dtype=F64)), ValueError, "T = 0"),
            (dict(observations=torch.zeros(5, 2, dtype=torch.int64)), TypeError, "observations"),
            (dict(observations=torch.zeros(5, 2, dtype=torch.float16)), TypeError, "observations"),
            (dict(transition_matrix=torch.eye(2, dtype=torch.float32)), TypeError, "transition_matrix"),
            (dict(observations=torch.tensor([[0.0, float("inf")]] * 5, dtype=F64)), ValueError, "infinite"),
            (dict(transition_matrix=torch.tensor([[float("nan"), 0], [0, 1]], dtype=F64)), ValueError, "NaN"),
            (dict(observations=torch.zeros(3, 5, 2, dtype=F64), initial_mean=torch.zeros(4, 2, dtype=F64)),
             ValueError, "broadcast"),
            (dict(observations=torch.zeros(5, dtype=F64)), ValueError, "observations"),
        ],
    )
    def test_clear_errors(self, fn, override, error, words):
        with pytest.raises(error, match=words):
            fn(**self.args(**override))

    def test_controls_need_control_matrix(self):
        with pytest.raises(ValueError, match="control_matrix"):
            kalman_filter(**self.args(), controls=torch.zeros(5, 1, dtype=F64))

    def test_psd_but_singular_transition_cov_is_allowed(self):
        res = kalman_filter(**self.args(transition_cov=torch.zeros(2, 2, dtype=F64),
                                        initial_cov=torch.zeros(2, 2, dtype=F64)))
        assert torch.isfinite(res.log_likelihood)

    def test_predict_checks(self):
        with pytest.raises(ValueError, match="num_steps"):
            predict(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64), torch.eye(2, dtype=F64),
                    torch.eye(2, dtype=F64), torch.eye(1, 2, dtype=F64), torch.eye(1, dtype=F64), 0)


@pytest.mark.gpu
def test_filters_on_cuda_match_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    rng = np.random.default_rng(13)
    T, dx, dy = 300, 4, 2
    model = random_model(rng, dx, dy, T, du=1)
    y = sample_with_nans(rng, model, T, dy)
    cpu = call(kalman_filter, y, model)
    tm = {k: v.cuda() for k, v in to_torch(model).items()}
    y_gpu = torch.tensor(y, dtype=F64, device="cuda")
    for fn in (sequential_kalman_filter, parallel_kalman_filter):
        res = fn(y_gpu, tm["initial_mean"], tm["initial_cov"], tm["transition_matrix"], tm["transition_cov"],
                 tm["emission_matrix"], tm["emission_cov"], tm["controls"], tm["control_matrix"])
        assert res.filtered_means.device.type == "cuda"
        torch.testing.assert_close(res.log_likelihood.cpu(), cpu.log_likelihood, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(res.filtered_covs.cpu(), cpu.filtered_covs, rtol=1e-9, atol=1e-10)
    sm = parallel_rts_smoother(y_gpu, tm["initial_mean"], tm["initial_cov"], tm["transition_matrix"],
                               tm["transition_cov"], tm["emission_matrix"], tm["emission_cov"], tm["controls"],
                               tm["control_matrix"])
    torch.testing.assert_close(sm.smoothed_means.cpu(), call(rts_smoother, y, model).smoothed_means, rtol=1e-9,
                               atol=1e-10)
