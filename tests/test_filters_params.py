"""The one linear-Gaussian parameter container, the calls with separate arguments, the filter's methods.

Oracles: an explicit loop over the public predict_step / update_step (the lecture's), scipy's
multivariate normal on the observed sub-vector, and the separate-argument calls of before.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.stats
import torch

from mbrl_course.filters import (
    LinearGaussianModel,
    LinearGaussianSSM,
    choose_method,
    kalman_filter,
    parallel_kalman_filter,
    parallel_rts_smoother,
    predict,
    predict_step,
    rts_smoother,
    update_step,
)
from mbrl_course.filters import kalman as kalman_module
from mbrl_course.filters._gaussian import gaussian_log_density, mask_covariance
from mbrl_course.filters._validate import prepare_filter_inputs
from mbrl_course.filters.kalman import PARALLEL_MIN_STEPS

F64 = torch.float64
RESULT_FIELDS = ("filtered_means", "filtered_covs", "predicted_means", "predicted_covs", "predicted_obs_means",
                 "predicted_obs_covs", "step_log_likelihoods", "log_likelihood")


def spd(gen: torch.Generator, n: int, scale: float, *batch: int) -> torch.Tensor:
    A = torch.randn(*batch, n, n, generator=gen, dtype=F64)
    return scale * (A @ A.mT / n + 0.3 * torch.eye(n, dtype=F64))


def random_fields(seed: int, dx=3, dy=2, du=2, T=None, batch=()) -> dict[str, torch.Tensor]:
    """A random model's fields; matrices with a time axis of size T (and batch dimensions) when T is given."""
    g = torch.Generator().manual_seed(seed)
    lead = () if T is None else (*batch, T)
    E = torch.linalg.qr(torch.randn(*lead, dx, dx, generator=g, dtype=F64))[0] * 0.9
    fields = dict(
        initial_mean=torch.randn(*batch, dx, generator=g, dtype=F64),
        initial_cov=spd(g, dx, 1.0, *batch),
        transition_matrix=E,
        transition_cov=spd(g, dx, 0.3, *lead),
        emission_matrix=torch.randn(*lead, dy, dx, generator=g, dtype=F64),
        emission_cov=spd(g, dy, 0.5, *lead),
    )
    if du:
        fields["control_matrix"] = torch.randn(*lead, dx, du, generator=g, dtype=F64)
    return fields


def data(seed: int, T: int, dy=2, du=2, batch=(), missing=0.25):
    """Observations with NaN entries (and one all-NaN step) and controls."""
    g = torch.Generator().manual_seed(seed + 1000)
    y = torch.randn(*batch, T, dy, generator=g, dtype=F64)
    y[torch.rand(y.shape, generator=g, dtype=F64) < missing] = float("nan")
    if T > 2:
        y[..., 1, :] = float("nan")
    u = torch.randn(*batch, T, du, generator=g, dtype=F64) if du else None
    return y, u


def assert_same_results(a, b, rtol=0.0, atol=0.0, fields=RESULT_FIELDS):
    for name in fields:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=rtol, atol=atol, msg=name)


# ------------------------------------------------------------------------------ the container


class TestContainerChecks:
    def fields(self, **over):
        base = dict(
            initial_mean=torch.zeros(2, dtype=F64),
            initial_cov=torch.eye(2, dtype=F64),
            transition_matrix=torch.eye(2, dtype=F64),
            transition_cov=torch.eye(2, dtype=F64),
            emission_matrix=torch.eye(1, 2, dtype=F64),
            emission_cov=torch.eye(1, dtype=F64),
        )
        base.update(over)
        return base

    @pytest.mark.parametrize(
        "override, error, words",
        [
            (dict(initial_mean=torch.zeros(2, dtype=torch.float16)), TypeError, "initial_mean"),
            (dict(initial_mean=torch.zeros(0, dtype=F64)), ValueError, "initial_mean"),
            (dict(initial_cov=torch.eye(3, dtype=F64)), ValueError, "initial_cov"),
            (dict(initial_cov=None), TypeError, "initial_cov"),
            (dict(initial_cov=torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=F64)), ValueError, "initial_cov.*symmetric"),
            (dict(initial_cov=-torch.eye(2, dtype=F64)), ValueError, "initial_cov.*semi-definite"),
            (dict(transition_matrix=torch.eye(3, dtype=F64)), ValueError, "transition_matrix"),
            (dict(transition_matrix=torch.eye(2, dtype=torch.float32)), TypeError, "transition_matrix.*float64"),
            (dict(transition_cov=torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64)), ValueError, "transition_cov"),
            (dict(transition_cov=torch.tensor([[float("nan"), 0], [0, 1]], dtype=F64)), ValueError,
             "transition_cov.*NaN"),
            (dict(emission_matrix=torch.eye(2, 3, dtype=F64)), ValueError, "emission_matrix"),
            (dict(emission_cov=torch.zeros(1, 1, dtype=F64)), ValueError, "emission_cov.*positive-definite"),
            (dict(emission_cov=torch.zeros(1, 2, dtype=F64)), ValueError, "emission_cov.*square"),
            (dict(control_matrix=torch.zeros(3, 1, dtype=F64)), ValueError, "control_matrix"),
            (dict(transition_matrix=torch.eye(2, dtype=F64).expand(5, 2, 2),
                  transition_cov=torch.eye(2, dtype=F64).expand(6, 2, 2)), ValueError, "transition_cov.*time axis"),
            (dict(initial_mean=torch.zeros(3, 2, dtype=F64), emission_cov=torch.eye(1, dtype=F64).expand(4, 1, 1, 1)),
             ValueError, "emission_cov.*broadcast"),
        ],
    )
    def test_errors_name_the_field(self, override, error, words):
        with pytest.raises(error, match=words):
            LinearGaussianSSM(**self.fields(**override))

    def test_checked_once_then_frozen(self):
        params = LinearGaussianSSM(**self.fields())
        with pytest.raises(dataclasses.FrozenInstanceError):
            params.transition_cov = -torch.eye(2, dtype=F64)

    def test_non_tensors_take_the_initial_means_dtype(self):
        params = LinearGaussianSSM(torch.zeros(2, dtype=torch.float32), [[1.0, 0.0], [0.0, 1.0]], np.eye(2), np.eye(2),
                                   [[1.0, 0.0]], [[1.0]])
        assert all(getattr(params, f).dtype == torch.float32 for f in ("initial_cov", "transition_matrix",
                                                                         "emission_cov"))
        assert (params.state_dim, params.obs_dim, params.control_dim, params.num_steps) == (2, 1, None, None)

    def test_shape_summary(self):
        params = LinearGaussianSSM(**random_fields(0, T=7, batch=(4,)))
        assert (params.state_dim, params.obs_dim, params.control_dim) == (3, 2, 2)
        assert params.num_steps == 7 and params.batch_shape == (4,)

    @pytest.mark.parametrize(
        "observations, controls, error, words",
        [
            (torch.zeros(5, 2, dtype=F64), None, ValueError, "observations"),  # dy = 1
            (torch.zeros(5, 1, dtype=torch.float32), None, TypeError, "observations"),
            (torch.zeros(5, 1, dtype=F64), torch.zeros(5, 1, dtype=F64), ValueError, "control_matrix"),
            (torch.zeros(3, 5, 1, dtype=F64), None, ValueError, "broadcast"),
        ],
    )
    def test_the_data_is_checked_against_the_model(self, observations, controls, error, words):
        params = LinearGaussianSSM(**self.fields(initial_mean=torch.zeros(4, 2, dtype=F64)))
        for fn in (kalman_filter, parallel_kalman_filter, rts_smoother, parallel_rts_smoother):
            with pytest.raises(error, match=words):
                fn(params, observations, controls)

    def test_time_axis_must_fit_the_data(self):
        params = LinearGaussianSSM(**self.fields(transition_matrix=torch.eye(2, dtype=F64).expand(4, 2, 2)))
        with pytest.raises(ValueError, match="transition_matrix.*time axis"):
            kalman_filter(params, torch.zeros(5, 1, dtype=F64))
        assert kalman_filter(params, torch.zeros(4, 1, dtype=F64)).filtered_means.shape == (4, 2)


# ------------------------------------------------------------------------------ both calling conventions


@pytest.mark.parametrize("fn", [kalman_filter, parallel_kalman_filter, rts_smoother, parallel_rts_smoother])
def test_separate_arguments_equal_the_container(fn):
    fields = random_fields(1, T=9, batch=(2,))
    y, u = data(1, 9, batch=(2,))
    params = LinearGaussianSSM(**fields)
    B = fields.pop("control_matrix")
    order = [fields[k] for k in ("initial_mean", "initial_cov", "transition_matrix", "transition_cov",
                                 "emission_matrix", "emission_cov")]
    calls = [
        fn(params, y, u),
        fn(params=params, observations=y, controls=u),
        fn(y, *order, u, B),
        fn(y, *order, controls=u, control_matrix=B),
        fn(observations=y, controls=u, control_matrix=B, **fields),
    ]
    names = [f.name for f in dataclasses.fields(calls[0]) if isinstance(getattr(calls[0], f.name), torch.Tensor)]
    for other in calls[1:]:
        assert_same_results(other, calls[0], fields=names)


def test_separate_arguments_are_still_checked_with_their_names():
    fields = random_fields(2, du=0)
    y, _ = data(2, 6, du=0)
    with pytest.raises(ValueError, match="controls: required when control_matrix"):
        kalman_filter(y, *fields.values(), None, torch.zeros(3, 1, dtype=F64))
    with pytest.raises(TypeError, match="kalman_filter: expected a LinearGaussianSSM.*emission_cov"):
        kalman_filter(y, *list(fields.values())[:-1])
    with pytest.raises(ValueError, match="emission_cov"):
        kalman_filter(y, *list(fields.values())[:-1], -torch.eye(2, dtype=F64))
    lists = {k: v.tolist() for k, v in fields.items()}  # non-tensors take the observations' dtype, as before
    assert_same_results(kalman_filter(y, **lists), kalman_filter(LinearGaussianSSM(**fields), y))


def test_predict_with_separate_arguments_equals_the_container():
    fields = random_fields(3)
    params = LinearGaussianSSM(**fields)
    g = torch.Generator().manual_seed(3)
    m, S, u = torch.randn(dx := 3, generator=g, dtype=F64), spd(g, dx, 1.0), torch.randn(4, 2, generator=g, dtype=F64)
    new = predict(params, m, S, 4, u)
    E, F, C, D, B = (fields[k] for k in ("transition_matrix", "transition_cov", "emission_matrix", "emission_cov",
                                         "control_matrix"))
    for old in (predict(m, S, E, F, C, D, 4, u, B), predict(m, S, E, F, C, D, num_steps=4, controls=u, control_matrix=B)):
        for name in ("state_means", "state_covs", "obs_means", "obs_covs"):
            torch.testing.assert_close(getattr(old, name), getattr(new, name), rtol=0, atol=0)
    with pytest.raises(ValueError, match="filtered_cov"):
        predict(m, -S, E, F, C, D, 4)


def test_learnable_model_is_built_from_the_container():
    fields = random_fields(4)
    ssm = LinearGaussianSSM(**fields)
    a, b = LinearGaussianModel(ssm), LinearGaussianModel(*fields.values())
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    for (_, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    back = a.ssm()
    for name in fields:
        torch.testing.assert_close(getattr(back, name), fields[name], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="emission_cov"):
        LinearGaussianModel(**{**fields, "emission_cov": -torch.eye(2, dtype=F64)})


# ------------------------------------------------------------------------------ one filter, two methods


@pytest.mark.parametrize("T", [1, 3, PARALLEL_MIN_STEPS - 1, PARALLEL_MIN_STEPS, 40, 129])
@pytest.mark.parametrize("time_varying", [False, True])
def test_auto_sequential_and_parallel_agree(T, time_varying):
    """float64, random models with batch dimensions, NaN entries, an all-NaN step and controls."""
    params = LinearGaussianSSM(**random_fields(T, T=T if time_varying else None, batch=(3,) if time_varying else ()))
    y, u = data(T, T, batch=(3,))
    results = {m: kalman_filter(params, y, u, method=m) for m in ("auto", "sequential", "parallel")}
    assert_same_results(results["sequential"], results["parallel"], rtol=1e-8, atol=1e-8)
    inputs = prepare_filter_inputs(params, y, u)
    chosen = "parallel" if T >= PARALLEL_MIN_STEPS else "sequential"
    assert choose_method(inputs) == chosen
    assert_same_results(results["auto"], results[chosen])
    assert_same_results(params.filter(y, u), results["auto"])


@pytest.mark.parametrize("batch, T, chosen", [((), PARALLEL_MIN_STEPS - 1, "sequential"),
                                                ((), PARALLEL_MIN_STEPS, "parallel"),
                                                ((16, 16), 3, "sequential"), ((16, 16), 4, "parallel")])
def test_auto_rule(batch, T, chosen):
    params = LinearGaussianSSM(**random_fields(8, du=0))
    assert choose_method(prepare_filter_inputs(params, torch.zeros(*batch, T, 2, dtype=F64))) == chosen


def test_unknown_method_is_refused():
    params = LinearGaussianSSM(**random_fields(5, du=0))
    with pytest.raises(ValueError, match="method"):
        kalman_filter(params, torch.zeros(4, 2, dtype=F64), method="fast")


def test_sequential_path_is_the_loop_over_predict_step_and_update_step(monkeypatch):
    """The lecture's loop written out here with the public steps gives exactly kalman_filter's numbers."""
    T = 12
    fields = random_fields(6, T=T)
    y, u = data(6, T)
    res = kalman_filter(LinearGaussianSSM(**fields), y, u, method="sequential")
    m, S = fields["initial_mean"], fields["initial_cov"]
    for t in range(T):
        offset = fields["control_matrix"][t] @ u[t]
        mu, Sigma = predict_step(m, S, fields["transition_matrix"][t], fields["transition_cov"][t], offset)
        m, S, log_lik = update_step(mu, Sigma, y[t], fields["emission_matrix"][t], fields["emission_cov"][t])
        torch.testing.assert_close(res.predicted_means[t], mu, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(res.predicted_covs[t], Sigma, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(res.filtered_means[t], m, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(res.filtered_covs[t], S, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(res.step_log_likelihoods[t], log_lik, rtol=1e-14, atol=1e-14)
    calls = {"predict_step": 0, "update_step": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(kalman_module, "predict_step", counted("predict_step", predict_step))
    monkeypatch.setattr(kalman_module, "update_step", counted("update_step", update_step))
    kalman_filter(LinearGaussianSSM(**fields), y, u, method="sequential")
    assert calls == {"predict_step": T, "update_step": T}


# ------------------------------------------------------------------------------ the masked log-density


def test_masked_gaussian_log_density_is_the_marginal_of_the_observed_entries():
    g = torch.Generator().manual_seed(7)
    d = 4
    cov = spd(g, d, 1.0, 5)
    r = torch.randn(5, d, generator=g, dtype=F64)
    observed = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 1]], dtype=torch.bool)
    L = torch.linalg.cholesky(mask_covariance(cov, observed))
    got = gaussian_log_density(torch.where(observed, r, 0.0), L, observed)
    for i in range(5):
        o = observed[i].numpy()
        want = 0.0 if not o.any() else scipy.stats.multivariate_normal(np.zeros(o.sum()), cov[i].numpy()[np.ix_(o, o)]
                                                                       ).logpdf(r[i].numpy()[o])
        assert float(got[i]) == pytest.approx(want, rel=1e-12, abs=1e-12)
    full = gaussian_log_density(r, torch.linalg.cholesky(cov))
    torch.testing.assert_close(full, got.new_tensor([scipy.stats.multivariate_normal(np.zeros(d), c.numpy()).logpdf(x)
                                                     for c, x in zip(cov, r.numpy())]), rtol=1e-12, atol=1e-12)
