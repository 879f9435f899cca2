"""Which OpenGL backend MuJoCo renders with: chosen once, in code, before ``mujoco`` is first imported.

MuJoCo reads ``MUJOCO_GL`` once, when ``import mujoco`` runs, and a backend whose libraries do not
load makes that import raise (not only ``render()``): a machine without libEGL and ``MUJOCO_GL=egl``
cannot even create an InvertedPendulum without a renderer. So nothing in the course sets
``MUJOCO_GL`` by hand any more; :func:`choose_gl_backend` (run when :mod:`mbrl_course.envs` is
imported) decides:

1. ``MUJOCO_GL`` set by you: it is respected. If it cannot load, rendering is off and ``mujoco``
   is imported without a GL backend, so the envs still step; ``MUJOCO_GL`` keeps your value.
2. Linux, unset: the first headless backend whose libraries load, ``egl`` (libEGL + libGL/libOpenGL)
   then ``osmesa`` (libOSMesa), is written to ``MUJOCO_GL`` (child processes inherit it). Neither,
   but a display: MuJoCo's default (GLFW, a hidden window). Neither and no display: rendering is off.
3. macOS and Windows, unset: left unset, MuJoCo's default (CGL / GLFW, WGL); macOS has no EGL.

The probe only opens the shared libraries (``ctypes.CDLL``, about a millisecond): it cannot see a
libEGL that loads but finds no device. :func:`mbrl_course.envs.make_env` therefore renders one frame
when it is asked for ``render_mode="rgb_array"`` and turns rendering off, with one warning, when that
fails; :func:`rendering_failed` records it so the next env does not try again. ``mbrl-course doctor``
renders with each backend in a fresh Python and says what to install.

>>> from mbrl_course.envs.rendering import choose_gl_backend
>>> backend = choose_gl_backend()
>>> backend.available in (True, False)
True
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from dataclasses import dataclass, replace

HEADLESS_BACKENDS: tuple[str, ...] = ("egl", "osmesa")
"""Linux's headless backends, in the order they are tried: EGL (GPU or Mesa), then OSMesa (software)."""

GYMNASIUM_BACKENDS: tuple[str, ...] = ("glfw", "egl", "osmesa")
"""The ``MUJOCO_GL`` values gymnasium's MuJoCo renderer accepts."""

_DISABLED = ("disable", "disabled", "off", "false", "0")
_LIBRARIES: dict[str, tuple[tuple[str, ...], ...]] = {
    # one of each group must load; PyOpenGL's EGL platform loads libEGL and libOpenGL or libGL
    "egl": (("libEGL.so.1", "libEGL.so"), ("libOpenGL.so.0", "libGL.so.1", "libOpenGL.so", "libGL.so")),
    "osmesa": (("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so"),),
}
DOCTOR_HINT = "run `mbrl-course doctor` to see what to install"


class RenderingUnavailableWarning(UserWarning):
    """Rendering is off: the env steps, but ``env.render_mode is None`` and no video is recorded."""


@dataclass(frozen=True)
class GLBackend:
    """The backend MuJoCo renders with in this process, and whether it can."""

    name: str | None
    """The ``MUJOCO_GL`` value mujoco imports with; ``None``: unset, MuJoCo's default (GLFW, or CGL on macOS)."""
    chosen_by: str
    """``"MUJOCO_GL"`` (your setting), ``"probe"`` (:func:`choose_gl_backend`) or ``"mujoco"`` (imported before us)."""
    error: str | None = None
    """Why MuJoCo cannot render here; ``None`` when it should."""

    @property
    def available(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        """E.g. ``"MUJOCO_GL=egl (chosen automatically)"``."""
        name = f"MUJOCO_GL={self.name}" if self.name else "MuJoCo's default GL (MUJOCO_GL unset)"
        why = {"MUJOCO_GL": "set by you", "probe": "chosen automatically",
               "mujoco": "mujoco was imported before mbrl_course.envs"}[self.chosen_by]
        return f"{name} ({why})"


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _first_that_loads(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    return None


def probe_backend(name: str, system: str | None = None) -> str | None:
    """Why MuJoCo (through gymnasium) cannot render with ``MUJOCO_GL=name`` here, or ``None`` if it should.

    Cheap and in-process: checks the value and opens the backend's shared libraries; it never
    imports mujoco or PyOpenGL, so it can run before the choice is made.
    """
    system = system or platform.system()
    value = name.lower().strip()
    if value in _DISABLED:
        return f"MUJOCO_GL={name} turns MuJoCo's rendering off"
    if value not in GYMNASIUM_BACKENDS:
        return f"gymnasium renders with MUJOCO_GL set to one of {', '.join(GYMNASIUM_BACKENDS)}, got {name!r}"
    if value == "glfw":
        if system == "Linux" and not _has_display():
            return "MUJOCO_GL=glfw needs a display and neither DISPLAY nor WAYLAND_DISPLAY is set"
        return None
    if system != "Linux":
        return f"MUJOCO_GL={value} exists on Linux only ({system} renders with MuJoCo's default: unset MUJOCO_GL)"
    pyopengl = os.environ.get("PYOPENGL_PLATFORM")
    if pyopengl and pyopengl.lower() != value:
        return f"MUJOCO_GL={value} needs PYOPENGL_PLATFORM unset or {value!r}, got {pyopengl!r}"
    for group in _LIBRARIES[value]:
        if _first_that_loads(group) is None:
            return f"none of {', '.join(group)} loads"
    return None


def _import_mujoco_without_gl() -> None:
    """``import mujoco`` with GL off, so that a ``MUJOCO_GL`` that cannot load does not make it raise."""
    if "mujoco" in sys.modules:
        return
    user = os.environ.get("MUJOCO_GL")
    os.environ["MUJOCO_GL"] = "disable"
    try:
        import mujoco  # noqa: F401
    finally:
        if user is None:
            del os.environ["MUJOCO_GL"]
        else:
            os.environ["MUJOCO_GL"] = user


_BACKEND: GLBackend | None = None


def choose_gl_backend() -> GLBackend:
    """Choose MuJoCo's GL backend for this process (the first call decides; later calls return it).

    Sets ``MUJOCO_GL`` only when it is unset and a Linux headless backend loads; see the module's
    docstring for the rules.
    """
    global _BACKEND
    if _BACKEND is not None:
        return _BACKEND
    user = os.environ.get("MUJOCO_GL")
    if "mujoco" in sys.modules:  # too late to choose: report what it was imported with
        _BACKEND = GLBackend(user or None, "mujoco")
    elif user is not None and user.strip():
        error = probe_backend(user)
        if error is not None:
            _import_mujoco_without_gl()
        _BACKEND = GLBackend(user, "MUJOCO_GL", error)
    elif platform.system() != "Linux":
        _BACKEND = GLBackend(None, "probe")
    else:
        errors = []
        for name in HEADLESS_BACKENDS:
            error = probe_backend(name, "Linux")
            if error is None:
                os.environ["MUJOCO_GL"] = name
                _BACKEND = GLBackend(name, "probe")
                break
            errors.append(f"{name}: {error}")
        else:
            os.environ.pop("MUJOCO_GL", None)  # an empty value: MuJoCo's default
            _BACKEND = GLBackend(None, "probe", None if _has_display() else
                                 "no headless OpenGL loads (" + "; ".join(errors) + ") and there is no display")
    return _BACKEND


def rendering_failed(error: str) -> GLBackend:
    """Record that rendering failed in this process (e.g. the first frame raised): later envs skip it."""
    global _BACKEND
    _BACKEND = replace(choose_gl_backend(), error=error)
    return _BACKEND
