"""``mbrl-course doctor``: check that this environment can run the course, and say what to fix.

Each check reports OK, WARN (works, but something is missing or slow) or FAIL (the course
will not work), with a hint to act on::

    python -m mbrl_course.doctor          # or: mbrl-course doctor

Checks: Python, torch and its device, CUDA, gymnasium and MuJoCo, rendering (the ``MUJOCO_GL``
backend :func:`mbrl_course.envs.rendering.choose_gl_backend` picks, and what to install when none
loads), nbgrader, the ``python3`` Jupyter kernel, ipywidgets, the
package's installation and the compute tier (:func:`mbrl_course.budget`). No check can crash the
doctor: an unexpected error is reported as FAIL with what went wrong.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass

OK, WARN, FAIL = "OK", "WARN", "FAIL"
MIN_PYTHON = (3, 10)
TORCH_RANGE = ((2, 1), (2, 14))
NBGRADER_VERSION = "0.9.6"
COURSE_INSTALL = 'pip install -e ".[course]"  (or: make setup)'


@dataclass
class Check:
    """The result of one check."""

    name: str
    """What was checked, e.g. "torch"."""
    status: str
    """"OK", "WARN" or "FAIL"."""
    detail: str
    """What was found (versions, paths, devices)."""
    hint: str = ""
    """What to do about a WARN or FAIL."""


def _version(module) -> str:
    return str(getattr(module, "__version__", "unknown"))


def _major_minor(version: str) -> tuple[int, int]:
    parts = version.split("+")[0].split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


def check_python() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", FAIL, f"{version} ({sys.executable})",
                     f"the course needs Python {'.'.join(map(str, MIN_PYTHON))} or newer: install one and recreate .venv")
    return Check("python", OK, f"{version} ({sys.executable})")


def check_torch() -> Check:
    try:
        import torch
    except ImportError as err:
        return Check("torch", FAIL, f"cannot import torch ({err})", "make setup installs it (a CPU build where no GPU is found)")
    version = _version(torch)
    low, high = TORCH_RANGE
    if not low <= _major_minor(version) <= high:
        return Check("torch", WARN, f"{version}, outside the tested range {low[0]}.{low[1]}..{high[0]}.{high[1]}",
                     "install a torch in the range pyproject.toml gives")
    return Check("torch", OK, f"{version} (CUDA build {torch.version.cuda})" if torch.version.cuda else f"{version} (CPU build)")


def check_device() -> Check:
    import torch

    from mbrl_course._checks import resolve_device

    device = resolve_device(None)
    x = torch.arange(6.0, device=device).reshape(2, 3)
    if float((x @ x.T).sum().cpu()) != 83.0:  # Σ_ij <x_i, x_j> = |x_1 + x_2|² = |(3, 5, 7)|²
        return Check("device", FAIL, f"{device}: a 2x3 matmul gave a wrong result", "reinstall torch for this machine")
    if device.type == "cuda":
        return Check("device", OK, f"{device}: {torch.cuda.get_device_name(device)} (default for device=None)")
    return Check("device", OK, f"{device} (no GPU: fine for the smoke and default budgets; 'full' runs want a GPU)")


def _nvidia_gpus() -> list[str]:
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line for line in out.stdout.splitlines() if line.startswith("GPU")]


def check_cuda() -> Check:
    import torch

    gpus = _nvidia_gpus()
    if torch.cuda.is_available():
        a = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
        error = float((a.cuda() @ a.cuda()).cpu().sub(a @ a).abs().max())
        if error > 1e-2:
            return Check("cuda", FAIL, f"a matmul on the GPU differs from the CPU by {error:.3g}",
                         "check the NVIDIA driver and the CUDA build of torch")
        return Check("cuda", OK, f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)")
    if gpus:
        hint = ("this torch is a CPU build: remove .venv's torch and run make setup (it installs a CUDA build "
                "when nvidia-smi sees a GPU)") if torch.version.cuda is None else (
                "torch has CUDA but cannot use the GPU: check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES")
        return Check("cuda", WARN, f"{len(gpus)} NVIDIA GPU(s) present, torch cannot use them", hint)
    return Check("cuda", OK, "no NVIDIA GPU (not needed)")


def check_gymnasium() -> Check:
    try:
        import gymnasium

        from mbrl_course.envs.rendering import choose_gl_backend

        choose_gl_backend()  # a MUJOCO_GL that cannot load would make `import mujoco` raise
        import mujoco
    except ImportError as err:
        return Check("gymnasium", FAIL, f"cannot import {err.name or err}",
                     'pip install "gymnasium[classic-control,mujoco]" (make setup does)')
    return Check("gymnasium", OK, f"gymnasium {_version(gymnasium)}, mujoco {_version(mujoco)}")


_RENDER = (
    "import gymnasium as gym\n"
    "env = gym.make('InvertedPendulum-v5', render_mode='rgb_array', width=64, height=64)\n"
    "env.reset(seed=0)\n"
    "frame = env.render()\n"
    "env.close()\n"
    "print(tuple(frame.shape), int(frame.max()))\n"
)


def _render_with(backend: str | None) -> tuple[bool, str]:
    """Render one MuJoCo frame in a fresh Python with ``MUJOCO_GL=backend`` (``None``: unset): (worked, what happened)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    if backend is not None:
        env["MUJOCO_GL"] = backend
    with tempfile.TemporaryDirectory() as tmp:  # MuJoCo may write MUJOCO_LOG.TXT to the working directory
        try:
            out = subprocess.run([sys.executable, "-c", _RENDER], capture_output=True, text=True, timeout=120,
                                 env=env, cwd=tmp)
        except subprocess.TimeoutExpired:
            return False, "timed out after 120 s"
    if out.returncode == 0 and out.stdout.strip().startswith("(64, 64, 3)"):
        return True, out.stdout.strip()
    last = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
    return False, last[:200]


def render_install_hint(system: str | None = None) -> str:
    """What to install so that MuJoCo can render on ``system`` (``platform.system()`` by default)."""
    system = system or platform.system()
    skipped = "until then training runs and skips rollout.gif (or pass --no-render)"
    if system == "Linux":
        return ("install EGL: sudo apt-get install libegl1 libgl1 (or, without a GPU driver, OSMesa: "
                f"sudo apt-get install libosmesa6), then unset MUJOCO_GL: the course picks the one that loads; {skipped}")
    if system == "Darwin":
        return ("macOS has no headless EGL or OSMesa: unset MUJOCO_GL so MuJoCo uses its default GL (CGL), "
                f"which needs a logged-in desktop session; {skipped}")
    return f"unset MUJOCO_GL so MuJoCo uses its default GL (GLFW) and update the graphics driver; {skipped}"


def check_render() -> Check:
    from mbrl_course.envs.rendering import HEADLESS_BACKENDS, choose_gl_backend

    chosen = choose_gl_backend()
    name = f"MUJOCO_GL={chosen.name}" if chosen.name else "MuJoCo's default GL (MUJOCO_GL unset)"
    worked, what = _render_with(chosen.name)
    if worked:
        return Check("render", OK, f"MuJoCo renders with {chosen.describe()}")
    linux = platform.system() == "Linux"
    for other in HEADLESS_BACKENDS if linux else ():
        if other != chosen.name and _render_with(other)[0]:
            unset = " (or unset MUJOCO_GL: the course picks one that loads)" if chosen.chosen_by == "MUJOCO_GL" else ""
            return Check("render", WARN, f"{name} fails ({what}); MUJOCO_GL={other} works",
                         f"export MUJOCO_GL={other}{unset}")
    tried = f"{name} fails ({what})" + (f"; so do {' and '.join(HEADLESS_BACKENDS)}" if linux else "")
    return Check("render", WARN, f"MuJoCo cannot render: {tried}", render_install_hint())


def check_nbgrader() -> Check:
    try:
        import nbgrader
    except ImportError:
        return Check("nbgrader", WARN, "not installed (needed to validate and grade assignments)", COURSE_INSTALL)
    version = _version(nbgrader)
    scripts = os.path.dirname(sys.executable)
    if shutil.which("alembic") is None and os.path.exists(os.path.join(scripts, "alembic")):
        return Check("nbgrader", WARN, f"{version}, but `alembic` is not on PATH (nbgrader needs it to create a gradebook)",
                     f"activate the environment (source {scripts}/activate) before running nbgrader; "
                     "`mbrl-course course ...` works either way")
    if version != NBGRADER_VERSION:
        return Check("nbgrader", WARN, f"{version}; the course is tested with {NBGRADER_VERSION}",
                     f'pip install "nbgrader=={NBGRADER_VERSION}"')
    return Check("nbgrader", OK, version)


_PYTHON_ALIASES = {"python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"}


def check_kernel() -> Check:
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return Check("kernel", WARN, "jupyter_client is not installed (no notebooks)", COURSE_INSTALL)
    install = f"{sys.executable} -m ipykernel install --sys-prefix --name python3"
    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return Check("kernel", FAIL, "no Jupyter kernel named python3 (every course notebook asks for it)", install)
    program = spec.argv[0] if spec.argv else ""
    if program in _PYTHON_ALIASES:  # jupyter_client runs it with the Python that runs Jupyter
        return Check("kernel", OK, f"python3 runs the Python that starts Jupyter ({spec.resource_dir}); "
                     "start jupyter from this environment")
    if os.path.realpath(program) == os.path.realpath(sys.executable) or \
            os.path.realpath(program).startswith(os.path.realpath(sys.prefix) + os.sep):
        return Check("kernel", OK, f"python3 runs {program}, this environment")
    try:
        probe = subprocess.run([program, "-c", "import mbrl_course, torch"], capture_output=True, text=True, timeout=120)
        imports = probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        imports = False
    if imports:
        return Check("kernel", WARN, f"python3 runs {program}, another environment (it can import mbrl_course)",
                     f"to grade with this environment's packages: {install}")
    return Check("kernel", FAIL, f"python3 runs {program}, which cannot import mbrl_course and torch", install)


def check_ipywidgets() -> Check:
    try:
        import ipywidgets
    except ImportError:
        return Check("ipywidgets", WARN, "not installed: the lectures' sliders will not show", COURSE_INSTALL)
    version = _version(ipywidgets)
    if _major_minor(version) < (8, 0):
        return Check("ipywidgets", WARN, f"{version}; the lectures need 8 or newer", 'pip install "ipywidgets>=8"')
    return Check("ipywidgets", OK, version)


def check_package() -> Check:
    from importlib.metadata import PackageNotFoundError, version

    import mbrl_course

    location = os.path.dirname(os.path.abspath(mbrl_course.__file__))
    try:
        installed = version("mbrl_course")
    except PackageNotFoundError:
        return Check("mbrl_course", WARN, f"imported from {location} but not installed",
                     f"{COURSE_INSTALL}: notebooks run from other folders (e.g. by nbgrader) must find it")
    return Check("mbrl_course", OK, f"{installed} ({location})")


def check_tier() -> Check:
    from mbrl_course.budget import budget

    try:
        tier = budget()
    except ValueError as err:
        return Check("tier", FAIL, str(err), "unset MBRL_COURSE_BUDGET or set it to smoke, default or full")
    why = ("MBRL_COURSE_BUDGET" if os.environ.get("MBRL_COURSE_BUDGET") else
           "CI or NBGRADER_EXECUTION is set" if {"CI", "NBGRADER_EXECUTION"} & set(os.environ) else "the default")
    detail = f"{tier} (from {why})"
    if tier == "full":
        import torch

        if not torch.cuda.is_available():
            return Check("tier", WARN, detail + " without a GPU: paper-scale runs will take very long",
                         "use MBRL_COURSE_BUDGET=default on a CPU")
    return Check("tier", OK, detail)


def check_sandbox() -> Check:
    """Which of the grading sandbox's kernel layers this machine has (the instructor guide's "The sandbox")."""
    from mbrl_course.grading.sandbox import layers_available

    layers = layers_available()
    have = [f"Landlock ABI {layers['landlock']}"] if layers["landlock"] else []
    have += ["user/network/PID namespaces"] if layers["namespaces"] else []
    if len(have) == 2:
        return Check("sandbox", OK, "grading sandbox: " + ", ".join(have) + ", resource limits, audit hook")
    missing = [name for name, ok in (("Landlock", layers["landlock"]), ("namespaces", layers["namespaces"])) if not ok]
    return Check("sandbox", WARN, f"grading sandbox without {' and '.join(missing)}: only resource limits and the "
                 "audit hook guard files and the network", "autograde on a recent Linux (kernel >= 5.13)")


CHECKS: tuple[tuple[str, Callable[[], Check]], ...] = (
    ("python", check_python),
    ("torch", check_torch),
    ("device", check_device),
    ("cuda", check_cuda),
    ("gymnasium", check_gymnasium),
    ("render", check_render),
    ("nbgrader", check_nbgrader),
    ("kernel", check_kernel),
    ("ipywidgets", check_ipywidgets),
    ("mbrl_course", check_package),
    ("tier", check_tier),
    ("sandbox", check_sandbox),
)
"""Every check, in the order the report lists them."""


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    try:
        result = check()
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 (a check must never crash the doctor)
        kind = type(err).__name__
        hint = "install the missing package: " + COURSE_INSTALL if isinstance(err, ImportError) else \
            "unexpected: please report it with this line"
        return Check(name, FAIL, f"the check itself failed: {kind}: {err}", hint)
    if not isinstance(result, Check) or result.status not in (OK, WARN, FAIL):
        return Check(name, FAIL, f"the check returned {result!r}", "unexpected: please report it")
    return result


def run_doctor(skip: Iterable[str] = ()) -> list[Check]:
    """Run every check (except those named in ``skip``); never raises."""
    skip = set(skip)
    importlib.invalidate_caches()
    return [_guarded(name, check) for name, check in CHECKS if name not in skip]


def format_report(checks: list[Check]) -> str:
    """One line per check (status, name, detail), a hint under each WARN/FAIL, and a summary line."""
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        lines.append(f"[{c.status:>4}] {c.name:<{width}}  {c.detail}")
        if c.hint and c.status != OK:
            lines.append(f"       {'':<{width}}  -> {c.hint}")
    fails = sum(c.status == FAIL for c in checks)
    warns = sum(c.status == WARN for c in checks)
    if fails:
        lines.append(f"{fails} check(s) FAIL, {warns} WARN: fix the FAIL lines first (hints above).")
    elif warns:
        lines.append(f"Ready, with {warns} warning(s) (hints above).")
    else:
        lines.append("All checks passed: ready for the course.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the report; exit status 1 when a check FAILs."""
    import argparse

    parser = argparse.ArgumentParser(prog="mbrl-course doctor", description="check this environment for the course")
    parser.add_argument("--skip", action="append", default=[], choices=[name for name, _ in CHECKS],
                        help="skip a check (repeatable), e.g. --skip render")
    args = parser.parse_args(argv)
    checks = run_doctor(args.skip)
    print(format_report(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
