"""Rendering never stops training: the GL backend is chosen in code, an env that cannot render comes
back without a renderer and one warning, the doctor says what to install, HalfCheetah's camera follows."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from mbrl_course import doctor
from mbrl_course.envs import make_env, rendering
from mbrl_course.envs.rendering import RenderingUnavailableWarning, choose_gl_backend

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh Python: makes each env with render_mode="rgb_array", steps it, prints what happened.
_CHILD = textwrap.dedent("""
    import json, os, sys, warnings
    {prelude}
    from mbrl_course.envs import choose_gl_backend, make_env, RenderingUnavailableWarning
    out = {{"backend": list(choose_gl_backend().__dict__.values()), "MUJOCO_GL": os.environ.get("MUJOCO_GL")}}
    for env_id in sys.argv[1:]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            env = make_env(env_id, render_mode="rgb_array", seed=0)
            obs, *_ = env.step(env.action_space.sample())
            frame = env.render() if env.render_mode else None
        out[env_id] = {{
            "render_mode": env.render_mode, "finite": bool(abs(obs).max() < 1e6),
            "frame": None if frame is None else [list(frame.shape), int(frame.std() > 1)],
            "warnings": [str(w.message) for w in caught if issubclass(w.category, RenderingUnavailableWarning)],
        }}
    print(json.dumps(out))
""")

# Simulates a machine without GL libraries (the GPU server of the issue): no EGL, OSMesa or libGL loads.
_NO_GL_LIBRARIES = textwrap.dedent("""
    import ctypes
    _cdll = ctypes.CDLL
    def _no_gl(name, *args, **kwargs):
        if any(lib in str(name) for lib in ("libEGL", "libOSMesa", "libGL", "libOpenGL")):
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return _cdll(name, *args, **kwargs)
    ctypes.CDLL = _no_gl
""")


def _child(env_ids: tuple[str, ...], *, mujoco_gl: str | None, prelude: str = "", **extra_env: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **extra_env)
    if mujoco_gl is not None:
        env["MUJOCO_GL"] = mujoco_gl
    out = subprocess.run([sys.executable, "-c", _CHILD.format(prelude=prelude), *env_ids], capture_output=True,
                         text=True, timeout=300, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Exception ignored" not in out.stderr, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_rendering_off(result: dict, env_id: str, reason: str) -> None:
    got = result[env_id]
    assert got["render_mode"] is None and got["frame"] is None and got["finite"]
    assert len(got["warnings"]) == 1, got["warnings"]
    message = got["warnings"][0]
    assert f"rendering is off for {env_id}" in message and reason in message and "mbrl-course doctor" in message


@pytest.mark.skipif(ctypes.util.find_library("OSMesa") is not None, reason="OSMesa loads on this machine")
def test_a_mujoco_gl_that_cannot_load_turns_rendering_off_and_the_env_still_steps():
    # MUJOCO_GL=osmesa without libOSMesa makes `import mujoco` itself raise (AttributeError from PyOpenGL)
    result = _child(("InvertedPendulum-v5", "Pendulum-v1"), mujoco_gl="osmesa")
    assert result["backend"][:2] == ["osmesa", "MUJOCO_GL"] and result["MUJOCO_GL"] == "osmesa"  # still yours
    _assert_rendering_off(result, "InvertedPendulum-v5", "libOSMesa")
    assert result["Pendulum-v1"] == {"render_mode": "rgb_array", "finite": True, "frame": [[500, 500, 3], 1],
                                     "warnings": []}  # pygame draws it: no GL needed


def test_a_machine_without_gl_libraries_trains_without_video():
    result = _child(("InvertedPendulum-v5", "HalfCheetah-v5", "mbrl_course/CartPoleSwingUp-v0"), mujoco_gl=None,
                    prelude=_NO_GL_LIBRARIES)
    assert result["backend"][0] is None and "no headless OpenGL loads" in result["backend"][2]
    assert result["MUJOCO_GL"] is None  # nothing forced
    for env_id in ("InvertedPendulum-v5", "HalfCheetah-v5"):
        _assert_rendering_off(result, env_id, "libEGL.so.1")
    assert result["mbrl_course/CartPoleSwingUp-v0"]["frame"] == [[400, 600, 3], 1]


def test_a_first_frame_that_raises_turns_rendering_off_with_one_warning():
    # GLFW with a display that is not there: the libraries load, the GL context cannot be made
    result = _child(("InvertedPendulum-v5", "InvertedPendulum-v5"), mujoco_gl="glfw", DISPLAY=":4242")
    _assert_rendering_off(result, "InvertedPendulum-v5", "FatalError")
    assert "X11" in result["InvertedPendulum-v5"]["warnings"][0]  # GLFW's own complaint is in the message


@pytest.mark.skipif(ctypes.util.find_library("EGL") is None, reason="no libEGL on this machine")
def test_with_nothing_set_egl_is_chosen_and_renders():
    result = _child(("InvertedPendulum-v5",), mujoco_gl=None)
    assert result["backend"] == ["egl", "probe", None] and result["MUJOCO_GL"] == "egl"
    assert result["InvertedPendulum-v5"]["render_mode"] == "rgb_array"
    assert result["InvertedPendulum-v5"]["frame"] == [[480, 480, 3], 1] and not result["InvertedPendulum-v5"]["warnings"]


def test_probe_refuses_values_gymnasium_cannot_render_with():
    assert "one of glfw, egl, osmesa" in rendering.probe_backend("bogus", "Linux")
    assert "turns MuJoCo's rendering off" in rendering.probe_backend("disable", "Linux")
    assert "Linux only" in rendering.probe_backend("egl", "Darwin")
    assert rendering.probe_backend("glfw", "Darwin") is None


# ------------------------------------------------------------------------------ HalfCheetah's camera
def _cheetah_pixels(**kwargs) -> list[float]:
    """The share of the frame the cheetah covers, with its torso at x = 0 and x = 30 m.

    Oracle: the same camera renders the scene again with the cheetah's geoms transparent (the empty
    floor); the pixels that differ are the cheetah's.
    """
    env = make_env("HalfCheetah-v5", render_mode="rgb_array", width=160, height=120, **kwargs)
    env.reset(seed=0)
    sim = env.unwrapped
    cheetah = sim.model.geom_bodyid > 0  # body 0 is the world: the floor
    alpha = sim.model.geom_rgba[cheetah, 3].copy()
    shares = []
    for x in (0.0, 30.0):
        qpos = sim.init_qpos.copy()
        qpos[0] = x
        sim.set_state(qpos, sim.init_qvel)
        frame = env.render().astype(int)
        sim.model.geom_rgba[cheetah, 3] = 0.0
        floor = env.render().astype(int)
        sim.model.geom_rgba[cheetah, 3] = alpha
        shares.append(float((np.abs(frame - floor).sum(-1) > 30).mean()))
    env.close()
    return shares


@pytest.mark.skipif(not choose_gl_backend().available, reason="MuJoCo cannot render on this machine")
def test_half_cheetah_camera_follows_the_cheetah():
    start, far = _cheetah_pixels()
    assert start > 0.02 and far > 0.02 and abs(far - start) < 0.5 * start  # same size in frame, 30 m on
    old_start, old_far = _cheetah_pixels(camera_id=-1)  # gymnasium v5's default: a free camera left at the start
    assert old_start > 0.01 and old_far == 0.0  # the oracle sees the cheetah leave the old view


# ------------------------------------------------------------------------------ the doctor
@pytest.mark.parametrize("system, needle", [("Linux", "apt-get install libegl1 libgl1"),
                                            ("Linux", "libosmesa6"), ("Darwin", "macOS has no headless EGL"),
                                            ("Windows", "GLFW")])
def test_doctor_says_what_to_install_when_no_backend_renders(monkeypatch, system, needle):
    monkeypatch.setattr(doctor, "_render_with", lambda backend: (False, "OSError: libEGL.so.1: cannot open"))
    monkeypatch.setattr(doctor.platform, "system", lambda: system)
    check = doctor.check_render()
    assert check.status == doctor.WARN and "MuJoCo cannot render" in check.detail and "libEGL.so.1" in check.detail
    assert needle in check.hint and "rollout.gif" in check.hint


def test_doctor_names_the_backend_that_works(monkeypatch):
    chosen = choose_gl_backend()
    monkeypatch.setattr(doctor, "_render_with", lambda backend: (backend == "osmesa", "no"))
    monkeypatch.setattr(doctor.platform, "system", lambda: "Linux")
    monkeypatch.setattr(rendering, "_BACKEND", rendering.GLBackend("egl", "MUJOCO_GL"))
    check = doctor.check_render()
    assert check.status == doctor.WARN and "MUJOCO_GL=osmesa works" in check.detail
    assert check.hint.startswith("export MUJOCO_GL=osmesa") and "unset MUJOCO_GL" in check.hint
    if chosen.available:  # the real thing: a fresh Python renders with the chosen backend
        monkeypatch.undo()
        check = doctor.check_render()
        assert check.status == doctor.OK and chosen.describe() in check.detail


def test_rendering_failed_in_process_is_remembered(monkeypatch):
    from gymnasium.envs.mujoco import mujoco_rendering

    def broken(self, *args, **kwargs):
        raise RuntimeError("eglInitialize failed")

    monkeypatch.setattr(rendering, "_BACKEND", rendering.GLBackend("egl", "probe"))
    monkeypatch.setattr(mujoco_rendering.OffScreenViewer, "__init__", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = make_env("InvertedPendulum-v5", render_mode="rgb_array", seed=0)
    assert env.render_mode is None and env.step(env.action_space.sample())[0].shape == (4,)
    assert [w.category for w in caught] == [RenderingUnavailableWarning]
    assert "eglInitialize failed" in str(caught[0].message)
    assert choose_gl_backend().error == "RuntimeError: eglInitialize failed"  # the next env does not try again
