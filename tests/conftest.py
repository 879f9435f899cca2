"""Shared test set-up: one torch thread per xdist worker, a headless matplotlib, quiet progress bars."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("TQDM_DISABLE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

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
