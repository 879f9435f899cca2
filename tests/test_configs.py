"""Composed configs: every tier builds exactly the agents the flat configs built, ``--set`` reaches nested
settings, old flat keys name their new place, and a checkpoint's nested dicts give the config back."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mbrl_course.envs import make_env
from mbrl_course.models import GaussianEnsemble
from mbrl_course.planning import CEM
from mbrl_course.runs import ALGORITHMS, make_config
from mbrl_course.runs.settings import config_from_dict, setting_keys

ENV = "HalfCheetah-v5"  # A = 6 action dimensions: a per-dimension target entropy shows as −6, not −1

# What each builder passed to the model, planner, model fit, learner and loop before the configs were
# composed, read off the flat configs of mbrl_course 0.1.0 (agents/pets.py, mbmf.py, mbpo.py, sac.py,
# mbmf_ft.py at commit 4f6542b) by building every algorithm at every tier on HalfCheetah-v5.
EFFECTIVE = {
    ("pets", "smoke"): {
        "loop": {"seed_episodes": 1},
        "model": {"ensemble_size": 3, "hidden_size": 32, "num_layers": 2, "num_elites": 3, "predict_reward":
                 True, "activation": "silu"},
        "planner": {"type": "CEM", "horizon": 8, "population": 50, "iterations": 2, "elites": 5, "momentum":
                   0.1},
        "fit": {"batch_size": 32, "epochs": 5, "lr": 0.001, "patience": 5, "weight_decay": 5e-05},
        "mpc": {"particles": 3, "propagation": "ts_inf"},
    },
    ("pets", "default"): {
        "loop": {"seed_episodes": 1},
        "model": {"ensemble_size": 5, "hidden_size": 200, "num_layers": 3, "num_elites": 5, "predict_reward":
                 True, "activation": "silu"},
        "planner": {"type": "CEM", "horizon": 20, "population": 100, "iterations": 5, "elites": 10,
                   "momentum": 0.1},
        "fit": {"batch_size": 32, "epochs": 25, "lr": 0.001, "patience": 5, "weight_decay": 5e-05},
        "mpc": {"particles": 10, "propagation": "ts_inf"},
    },
    ("pets", "full"): {
        "loop": {"seed_episodes": 1},
        "model": {"ensemble_size": 5, "hidden_size": 200, "num_layers": 4, "num_elites": 5, "predict_reward":
                 True, "activation": "silu"},
        "planner": {"type": "CEM", "horizon": 30, "population": 400, "iterations": 5, "elites": 40,
                   "momentum": 0.1},
        "fit": {"batch_size": 32, "epochs": 50, "lr": 0.001, "patience": 5, "weight_decay": 5e-05},
        "mpc": {"particles": 20, "propagation": "ts_inf"},
    },
    ("mbmf", "smoke"): {
        "loop": {"seed_episodes": 1},
        "model": {"hidden_sizes": (64, 64), "type": "DeltaMLP"},
        "planner": {"type": "RandomShooting", "horizon": 8, "population": 200, "iterations": 1},
        "fit": {"batch_size": 64, "epochs": 5, "lr": 0.001, "patience": 5, "weight_decay": 0.0},
        "mpc": {"particles": 1, "propagation": "ts_inf"},
    },
    ("mbmf", "default"): {
        "loop": {"seed_episodes": 1},
        "model": {"hidden_sizes": (256, 256), "type": "DeltaMLP"},
        "planner": {"type": "RandomShooting", "horizon": 15, "population": 1000, "iterations": 1},
        "fit": {"batch_size": 64, "epochs": 30, "lr": 0.001, "patience": 5, "weight_decay": 0.0},
        "mpc": {"particles": 1, "propagation": "ts_inf"},
    },
    ("mbmf", "full"): {
        "loop": {"seed_episodes": 1},
        "model": {"hidden_sizes": (500, 500), "type": "DeltaMLP"},
        "planner": {"type": "RandomShooting", "horizon": 20, "population": 4096, "iterations": 1},
        "fit": {"batch_size": 64, "epochs": 60, "lr": 0.001, "patience": 5, "weight_decay": 0.0},
        "mpc": {"particles": 1, "propagation": "ts_inf"},
    },
    ("mbpo", "smoke"): {
        "loop": {"model_every": 100, "rollout_every": 50, "seed_steps": 200, "updates_per_step": 10},
        "learner": {"hidden_sizes": (64, 64), "gamma": 0.99, "tau": 0.005, "lr": {"actor": 0.001, "critic":
                   0.001, "alpha": 0.001}, "init_alpha": 1.0, "autotune_alpha": True, "target_entropy": -6.0,
                   "num_critics": 2},
        "dyna": {"batch_size": 128, "real_ratio": 0.05, "rollout_batch_size": 400, "rollout_schedule": (0, 1,
                1, 1), "sim_rounds": 8, "propagation": "ts1", "members": "elites", "sample_reward": True,
                "env_reward": False, "termination": "termination_fn('HalfCheetah-v5')"},
        "model": {"ensemble_size": 3, "hidden_size": 64, "num_layers": 2, "num_elites": 2, "predict_reward":
                 True, "activation": "silu"},
        "fit": {"batch_size": 32, "epochs": 40, "lr": 0.001, "max_updates": 1000, "patience": 5,
               "weight_decay": 5e-05},
    },
    ("mbpo", "default"): {
        "loop": {"model_every": 250, "rollout_every": 250, "seed_steps": 1000, "updates_per_step": 10},
        "learner": {"hidden_sizes": (128, 128), "gamma": 0.99, "tau": 0.005, "lr": {"actor": 0.0003, "critic":
                   0.0003, "alpha": 0.0003}, "init_alpha": 1.0, "autotune_alpha": True, "target_entropy":
                   -6.0, "num_critics": 2},
        "dyna": {"batch_size": 256, "real_ratio": 0.05, "rollout_batch_size": 10000, "rollout_schedule": (0,
                1, 1, 1), "sim_rounds": 4, "propagation": "ts1", "members": "elites", "sample_reward": True,
                "env_reward": False, "termination": "termination_fn('HalfCheetah-v5')"},
        "model": {"ensemble_size": 5, "hidden_size": 200, "num_layers": 3, "num_elites": 4, "predict_reward":
                 True, "activation": "silu"},
        "fit": {"batch_size": 64, "epochs": 50, "lr": 0.001, "max_updates": 2000, "patience": 5,
               "weight_decay": 5e-05},
    },
    ("mbpo", "full"): {
        "loop": {"model_every": 250, "rollout_every": 250, "seed_steps": 5000, "updates_per_step": 20},
        "learner": {"hidden_sizes": (256, 256), "gamma": 0.99, "tau": 0.005, "lr": {"actor": 0.0003, "critic":
                   0.0003, "alpha": 0.0003}, "init_alpha": 1.0, "autotune_alpha": True, "target_entropy":
                   -6.0, "num_critics": 2},
        "dyna": {"batch_size": 256, "real_ratio": 0.05, "rollout_batch_size": 100000, "rollout_schedule": (0,
                1, 1, 1), "sim_rounds": 4, "propagation": "ts1", "members": "elites", "sample_reward": True,
                "env_reward": False, "termination": "termination_fn('HalfCheetah-v5')"},
        "model": {"ensemble_size": 7, "hidden_size": 200, "num_layers": 4, "num_elites": 5, "predict_reward":
                 True, "activation": "silu"},
        "fit": {"batch_size": 256, "epochs": 100, "lr": 0.001, "patience": 5, "weight_decay": 5e-05},
    },
    ("sac", "smoke"): {
        "loop": {"seed_steps": 200, "updates_per_step": 3},
        "learner": {"hidden_sizes": (64, 64), "gamma": 0.99, "tau": 0.005, "lr": {"actor": 0.001, "critic":
                   0.001, "alpha": 0.001}, "init_alpha": 1.0, "autotune_alpha": True, "target_entropy": -6.0,
                   "num_critics": 2},
        "dyna": {"batch_size": 128, "real_ratio": 1.0, "rollout_batch_size": 400, "rollout_schedule": (0, 1,
                1, 1), "sim_rounds": 1, "propagation": "ts1", "members": "elites", "sample_reward": True,
                "env_reward": False, "termination": "None"},
    },
    ("sac", "default"): {
        "loop": {"seed_steps": 1000, "updates_per_step": 1},
        "learner": {"hidden_sizes": (128, 128), "gamma": 0.99, "tau": 0.005, "lr": {"actor": 0.0003, "critic":
                   0.0003, "alpha": 0.0003}, "init_alpha": 1.0, "autotune_alpha": True, "target_entropy":
                   -6.0, "num_critics": 2},
        "dyna": {"batch_size": 256, "real_ratio": 1.0, "rollout_batch_size": 400, "rollout_schedule": (0, 1,
                1, 1), "sim_rounds": 1, "propagation": "ts1", "members": "elites", "sample_reward": True,
                "env_reward": False, "termination": "None"},
    },
    ("sac", "full"): {
        "loop": {"seed_steps": 5000, "updates_per_step": 1},
        "learner": {"hidden_sizes": (256, 256), "gamma": 0.99, "tau": 0.005, "lr": {"actor": 0.0003, "critic":
                   0.0003, "alpha": 0.0003}, "init_alpha": 1.0, "autotune_alpha": True, "target_entropy":
                   -6.0, "num_critics": 2},
        "dyna": {"batch_size": 256, "real_ratio": 1.0, "rollout_batch_size": 400, "rollout_schedule": (0, 1,
                1, 1), "sim_rounds": 1, "propagation": "ts1", "members": "elites", "sample_reward": True,
                "env_reward": False, "termination": "None"},
    },
    ("mbmf-ft", "smoke"): {
        "loop": {"dagger_iterations": 1, "mpc_episodes": 2, "seed_episodes": 1},
        "model": {"hidden_sizes": (64, 64), "type": "DeltaMLP"},
        "planner": {"type": "RandomShooting", "horizon": 8, "population": 200, "iterations": 1},
        "fit": {"batch_size": 64, "epochs": 5, "lr": 0.001, "patience": 5, "weight_decay": 0.0},
        "mpc": {"particles": 1, "propagation": "ts_inf"},
        "learner": {"clip": 0.2, "entropy_coef": 0.0, "epochs": 2, "gae_lambda": 0.95, "gamma": 0.95,
                   "hidden_sizes": (64, 64), "init_log_std": -1.5, "lr": 0.0003, "max_grad_norm": 0.5,
                   "minibatch_size": 256, "normalize_advantages": True, "reward_scale": 0.1, "target_kl":
                   0.02, "value_coef": 0.5, "policy_log_std": -1.5},
        "finetune": {"bc_steps": 200, "bc_batch_size": 256, "bc_lr": 0.001, "episodes_per_update": 1,
                    "value_warmup_epochs": 5},
    },
    ("mbmf-ft", "default"): {
        "loop": {"dagger_iterations": 10, "mpc_episodes": 15, "seed_episodes": 1},
        "model": {"hidden_sizes": (256, 256), "type": "DeltaMLP"},
        "planner": {"type": "RandomShooting", "horizon": 15, "population": 1000, "iterations": 1},
        "fit": {"batch_size": 64, "epochs": 30, "lr": 0.001, "patience": 5, "weight_decay": 0.0},
        "mpc": {"particles": 1, "propagation": "ts_inf"},
        "learner": {"clip": 0.2, "entropy_coef": 0.0, "epochs": 10, "gae_lambda": 0.95, "gamma": 0.95,
                   "hidden_sizes": (64, 64), "init_log_std": -1.5, "lr": 0.0003, "max_grad_norm": 0.5,
                   "minibatch_size": 256, "normalize_advantages": True, "reward_scale": 0.1, "target_kl":
                   0.02, "value_coef": 0.5, "policy_log_std": -1.5},
        "finetune": {"bc_steps": 1000, "bc_batch_size": 256, "bc_lr": 0.001, "episodes_per_update": 8,
                    "value_warmup_epochs": 30},
    },
    ("mbmf-ft", "full"): {
        "loop": {"dagger_iterations": 5, "mpc_episodes": 10, "seed_episodes": 1},
        "model": {"hidden_sizes": (500, 500), "type": "DeltaMLP"},
        "planner": {"type": "RandomShooting", "horizon": 20, "population": 4096, "iterations": 1},
        "fit": {"batch_size": 64, "epochs": 60, "lr": 0.001, "patience": 5, "weight_decay": 0.0},
        "mpc": {"particles": 1, "propagation": "ts_inf"},
        "learner": {"clip": 0.2, "entropy_coef": 0.0, "epochs": 10, "gae_lambda": 0.95, "gamma": 0.95,
                   "hidden_sizes": (64, 64), "init_log_std": -1.5, "lr": 0.0003, "max_grad_norm": 0.5,
                   "minibatch_size": 256, "normalize_advantages": True, "reward_scale": 0.1, "target_kl":
                   0.02, "value_coef": 0.5, "policy_log_std": -1.5},
        "finetune": {"bc_steps": 1000, "bc_batch_size": 256, "bc_lr": 0.001, "episodes_per_update": 8,
                    "value_warmup_epochs": 30},
    },
}


def _model(model) -> dict:
    if isinstance(model, GaussianEnsemble):
        return {"ensemble_size": model.ensemble_size, "hidden_size": model.hidden_size,
                "num_layers": model.num_layers, "num_elites": model.num_elites,
                "predict_reward": model.predict_reward, "activation": model.activation}
    return {"hidden_sizes": tuple(model.hidden_sizes), "type": type(model).__name__}


def _planner(planner) -> dict:
    out = {"type": type(planner).__name__, "horizon": planner.horizon, "population": planner.population,
           "iterations": planner.iterations}
    if isinstance(planner, CEM):
        out.update(elites=planner.elites, momentum=planner.momentum)
    return out


def _fit(fit_kwargs: dict) -> dict:
    return {k: v for k, v in sorted(fit_kwargs.items()) if v is not None}  # None: fit_model's own default


def _sac(sac) -> dict:
    lr = {}
    for name, params in (("actor", sac.actor.parameters()), ("critic", sac.critic.parameters()),
                         ("alpha", [sac.log_alpha])):
        first = next(iter(params))
        lr[name] = next(g["lr"] for g in sac.optimizer.param_groups if any(p is first for p in g["params"]))
    c = sac.config
    return {"hidden_sizes": tuple(c.hidden_sizes), "gamma": c.gamma, "tau": c.tau, "lr": lr,
            "init_alpha": float(sac.log_alpha.detach().exp()), "autotune_alpha": c.autotune_alpha,
            "target_entropy": sac.target_entropy, "num_critics": c.num_critics}


def effective(algo: str, agent, loop_kwargs: dict) -> dict:
    """What the built agent runs with, read off the objects the builder made (not off the config)."""
    loop = dict(loop_kwargs)
    if algo in ("mbpo", "sac"):  # the Dyna loop's schedule lives with its agent and learner
        loop["updates_per_step"] = agent.updates_per_step
        if agent.model is not None:
            loop |= {"model_every": agent.model_every, "rollout_every": agent.learner.rollout_every}
    out = {"loop": dict(sorted(loop.items()))}
    if algo in ("pets", "mbmf", "mbmf-ft"):
        mpc = agent.expert if algo == "mbmf-ft" else agent
        out |= {"model": _model(mpc.model), "planner": _planner(mpc.planner), "fit": _fit(mpc.fit_kwargs),
                "mpc": {"particles": mpc.particles, "propagation": mpc.propagation}}
    if algo == "mbmf-ft":
        out["learner"] = {k: tuple(v) if isinstance(v, (list, tuple)) else v
                          for k, v in sorted(vars(agent.ppo.config).items())}
        out["learner"]["policy_log_std"] = float(agent.ppo.policy.log_std.detach().flatten()[0])
        out["finetune"] = {k: getattr(agent.config, k) for k in ("bc_steps", "bc_batch_size", "bc_lr",
                                                                 "episodes_per_update", "value_warmup_epochs")}
    if algo in ("mbpo", "sac"):
        out["learner"] = _sac(agent.learner.algo)
        mbpo = agent.learner
        out["dyna"] = {"batch_size": mbpo.batch_size, "real_ratio": mbpo.real_ratio,
                       "rollout_batch_size": mbpo.rollout_batch_size,
                       "rollout_schedule": tuple(mbpo.rollout_schedule), "sim_rounds": mbpo.sim_rounds,
                       "propagation": mbpo.propagation, "members": mbpo.members,
                       "sample_reward": mbpo.sample_reward, "env_reward": mbpo.reward_fn is not None,
                       "termination": repr(mbpo.termination_fn)}
        if agent.model is not None:
            out |= {"model": _model(agent.model), "fit": _fit(agent.fit_kwargs)}
    return out


@pytest.mark.parametrize("algo, tier", list(EFFECTIVE))
def test_every_tier_builds_the_agent_the_flat_configs_built(algo, tier):
    spec = ALGORITHMS[algo]
    config = spec.config_cls.for_budget(tier)
    agent = spec.build(make_env(ENV), ENV, config, device="cpu", seed=0)
    assert effective(algo, agent, spec.loop_kwargs(config)) == EFFECTIVE[(algo, tier)]


FLAT_ERA = ("pets", "mbmf", "mbpo", "sac", "mbmf-ft")
"""The algorithms of mbrl_course 0.1.0, whose configs were flat: the table and the moved keys are theirs.
Algorithms added since (Deep PILCO, ...) were born with composed configs and have no old keys."""


def test_the_table_covers_every_algorithm_and_tier():
    assert set(FLAT_ERA) <= set(ALGORITHMS)
    assert set(EFFECTIVE) == {(algo, tier) for algo in FLAT_ERA for tier in ("smoke", "default", "full")}


def test_set_reaches_nested_settings_with_the_command_line_conversions():
    config = make_config("mbpo", tier="smoke", overrides={
        "learner.lr": "3e-4", "model.ensemble_size": "7", "fit.epochs": "3", "learner.hidden_sizes": "32,16",
        "learned_reward": "false", "fit.max_updates": "none", "model.num_elites": "4", "rollout_batch_size": 50})
    assert config.learner.lr == 3e-4 and config.model.ensemble_size == 7 and config.fit.epochs == 3
    assert config.learner.hidden_sizes == (32, 16) and config.learned_reward is False
    assert config.fit.max_updates is None and config.model.num_elites == 4 and config.rollout_batch_size == 50
    smoke = make_config("mbpo", tier="smoke")
    assert config.model.hidden_size == smoke.model.hidden_size and config.fit.batch_size == smoke.fit.batch_size
    agent = ALGORITHMS["mbpo"].build(make_env("Pendulum-v1"), "Pendulum-v1", config, seed=0)
    assert agent.model.ensemble_size == 7 and agent.fit_kwargs["epochs"] == 3
    assert {g["lr"] for g in agent.learner.algo.optimizer.param_groups} == {3e-4}
    ft = make_config("mbmf-ft", tier="smoke", overrides={"expert.planner.population": "50", "learner.target_kl": "none"})
    assert ft.expert.planner.population == 50 and ft.learner.target_kl is None


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_old_flat_keys_name_the_key_they_moved_to(algo):
    keys = setting_keys(ALGORITHMS[algo].config_cls)
    assert bool(ALGORITHMS[algo].moved) == (algo in FLAT_ERA), algo
    for old, new in ALGORITHMS[algo].moved.items():
        assert new in keys and old not in keys, (algo, old, new)
        with pytest.raises(ValueError, match=f"{algo} has no setting '{old}'; it moved to '{new}'"):
            make_config(algo, tier="smoke", overrides={old: "1"})


def test_the_moved_keys_are_the_old_flat_fields():
    assert ALGORITHMS["mbpo"].moved["ensemble_size"] == "model.ensemble_size"
    assert ALGORITHMS["mbpo"].moved["lr"] == "learner.lr" and ALGORITHMS["mbpo"].moved["model_lr"] == "fit.lr"
    assert ALGORITHMS["pets"].moved["horizon"] == "planner.horizon"
    assert ALGORITHMS["mbmf-ft"].moved["population"] == "expert.planner.population"
    assert ALGORITHMS["mbmf-ft"].moved["policy_log_std"] == "learner.init_log_std"


@pytest.mark.parametrize("overrides, match", [
    ({"horizn": "3"}, "pets has no setting 'horizn'; expected one of model.ensemble_size, "),
    ({"planner.horizn": "3"}, "planner.horizon"),
    ({"particles.x": "3"}, "has no setting 'particles.x'"),
    ({"planner": "3"}, "'planner' is a group of settings; set one of planner.horizon, planner.population"),
    ({"planner.horizon": "abc"}, "planner.horizon expects an integer, got 'abc'"),
    ({"model.num_elites": "many"}, "model.num_elites expects an integer or none, got 'many'"),
    ({"fit.epochs": "0"}, "in 'fit': epochs: expected an integer >= 1, got 0"),
])
def test_bad_settings_are_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        make_config("pets", tier="smoke", overrides=overrides)


def test_a_learner_setting_its_own_checks_refuse_is_named():
    with pytest.raises(ValueError, match="in 'learner': gamma"):
        make_config("sac", tier="smoke", overrides={"learner.gamma": "1.5"})
    with pytest.raises(ValueError, match="rollout_schedule"):
        make_config("mbpo", tier="smoke", overrides={"rollout_schedule": "1,2,3"})


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_nested_dicts_give_the_config_back(algo):
    for tier in ("smoke", "default", "full"):
        config = make_config(algo, tier=tier)
        data = dataclasses.asdict(config)
        assert all(not dataclasses.is_dataclass(v) for v in data.values())
        assert config_from_dict(type(config), data) == config
    with pytest.raises(ValueError, match="no field"):
        config_from_dict(ALGORITHMS[algo].config_cls, {"not_a_field": 1})


def test_sac_learning_rates_default_to_lr_and_can_differ():
    from mbrl_course.rl import SAC, SACConfig

    sac = SAC(3, [-2.0], [2.0], SACConfig(hidden_sizes=(8,), lr=1e-3, critic_lr=5e-4), seed=0)
    rates = sorted(g["lr"] for g in sac.optimizer.param_groups)
    assert rates == [5e-4, 1e-3] and sac.target_entropy == -1.0
    assert torch.isfinite(sac.log_alpha)
