"""Shared test set-up: one torch thread per xdist worker, a headless matplotlib, quiet progress bars,
MuJoCo's GL backend chosen as the package chooses it, and the environment of the kernels that
nbgrader starts in the grading tests."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from mbrl_course.envs.rendering import choose_gl_backend  # noqa: E402

choose_gl_backend()  # before any test imports mujoco, whatever order the tests run in

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: one thread each avoids oversubscription, which slows torch's
    # small operations tenfold; OMP_NUM_THREADS carries the choice into the kernels and
    # subprocesses the tests start
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="no CUDA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _restore_torch_default_dtype():
    """Tests that exec notebook code (which may call torch.set_default_dtype) must not leak it into others."""
    dtype = torch.get_default_dtype()
    yield
    torch.set_default_dtype(dtype)


@pytest.fixture(scope="module")
def kernel_env():
    """Kernels started by nbgrader inherit this environment: the repository on an absolute PYTHONPATH."""
    repo = Path(__file__).resolve().parents[1]
    with pytest.MonkeyPatch.context() as mp:
        paths = [str(repo)] + [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        mp.setenv("PYTHONPATH", os.pathsep.join(paths))
        mp.setenv("MBRL_COURSE_BUDGET", "smoke")
        yield
