"""The sandboxed process that runs one student's notebook while it is graded.

Started by :class:`mbrl_course.grading.execute.Sandbox` as ``python -m mbrl_course.grading.worker``
with its settings in the environment variable ``MBRL_SANDBOX`` (JSON) and two pipe file
descriptors. It first walls itself in (:mod:`mbrl_course.grading.sandbox`: limits, namespaces,
Landlock), then imports torch, matplotlib and IPython, installs the audit hook, says hello and
serves the grader's requests until told to quit:

- ``exec``: run one cell of the notebook (IPython syntax) in the student's namespace and return
  its printed text, figures and error;
- ``lookup``: the values of some of the student's names (data, or handles to functions/objects);
- ``call`` / ``getattr`` / ``backward``: use those handles (see :mod:`mbrl_course.grading.remote`).

Nothing here is trusted by the grader: whatever this process answers is checked on the other side.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys

from mbrl_course.grading import sandbox

MAX_TEXT = 200_000
"""Characters of printed text kept between two messages (the rest is dropped, with a note)."""
MAX_FIGURES = 6
MAX_DISPLAY_BYTES = 4 * 2**20


class _CappedText(io.TextIOBase):
    """``sys.stdout`` and ``sys.stderr`` of the student's code: kept up to a size, then drained."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        text = str(text)
        room = MAX_TEXT - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def drain(self) -> str:
        text = "".join(self.parts)
        if self.dropped:
            text += f"\n[... {self.dropped} more characters of output were dropped]\n"
        self.parts, self.size, self.dropped = [], 0, 0
        return text

    @property
    def encoding(self) -> str:
        return "utf-8"


def _enter(cfg: dict) -> list[str]:
    limits = sandbox.Limits(**cfg["limits"])
    layers = ["limits: " + ", ".join(sandbox.apply_rlimits(limits))]
    if cfg.get("namespaces", True) and sandbox.enter_namespaces():
        layers.append("namespaces: user, network, PID")
    if cfg.get("landlock", True):
        from pathlib import Path

        reads, files, lists = sandbox.allowed_reads(
            Path(cfg["package_dir"]), [Path(p) for p in cfg["blocked_paths"]],
            Path(cfg["course_root"]) if cfg.get("course_root") else None)
        abi = sandbox.enter_landlock(reads, files, lists, [cfg["workdir"]])
        if abi:
            layers.append(f"Landlock ABI {abi}")
    return layers


def _make_shell(outputs: list):
    import matplotlib

    matplotlib.use("Agg")
    import subprocess  # noqa: F401 (so that its C helper is loaded, then disarmed by the hook)

    import matplotlib.pyplot  # noqa: F401 (imported before the audit hook)
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            size = sum(len(str(v)) for v in data.values())
            if size <= MAX_DISPLAY_BYTES and len(outputs) < 20:
                outputs.append({"output_type": "display_data", "data": dict(data), "metadata": dict(metadata or {})})

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    shell = InteractiveShell.instance(config=config)
    shell.display_pub = Publisher(shell=shell, parent=shell)
    shell.showtraceback = lambda *args, **kwargs: None  # errors are reported to the grader instead
    # the notebooks' set-up cell says `%matplotlib inline`; this shell has no GUI loop (the plain InteractiveShell
    # raises NotImplementedError from enable_gui): it keeps Agg and collects the figures itself (_figures)
    shell.register_magic_function(lambda line="": None, "line", "matplotlib")
    return shell


def _figures(outputs: list) -> None:
    """Open matplotlib figures as PNG outputs, then close them."""
    import base64

    import matplotlib.pyplot as plt

    for number in plt.get_fignums()[:MAX_FIGURES]:
        buffer = io.BytesIO()
        try:
            plt.figure(number).savefig(buffer, format="png", dpi=72, bbox_inches="tight")
        except Exception:  # noqa: BLE001 (a broken figure of the student's: skip it)
            continue
        if buffer.tell() <= MAX_DISPLAY_BYTES:
            outputs.append({"output_type": "display_data",
                            "data": {"image/png": base64.b64encode(buffer.getvalue()).decode(),
                                     "text/plain": f"<Figure {number}>"}, "metadata": {}})
    plt.close("all")


def main() -> int:
    # An interrupt must raise KeyboardInterrupt in the student's cell. A grader started in the background
    # (`nohup ... &`, a non-interactive shell's job) hands its children SIGINT *ignored*, and Python then never
    # installs its handler: an endless cell would be killed, costing the student every later cell.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cfg = json.loads(os.environ.pop("MBRL_SANDBOX"))
    read_fd, write_fd = cfg["fds"]
    layers = _enter(cfg)
    os.chdir(cfg["cwd"])
    sys.path.insert(0, cfg["cwd"])

    import traceback

    import torch

    from mbrl_course.grading import remote, wire

    outputs: list = []
    shell = _make_shell(outputs)
    import importlib

    for name in cfg.get("preload", []):
        importlib.import_module(name)
    leaked = [m for m in sys.modules for b in cfg["blocked_modules"] if m == b or m.startswith(b + ".")]
    if leaked:  # the instructor's preload pulled in the reference: refuse to grade rather than leak it
        raise SystemExit(f"preload_modules import the reference implementation ({', '.join(sorted(leaked))})")
    sandbox.install_audit_hook(cfg["blocked_modules"], cfg["blocked_paths"], cfg["workdir"], cfg["private_paths"])
    layers.append("audit hook")
    text = _CappedText()
    sys.stdout = sys.stderr = text

    class WorkerPeer(remote.Peer):
        def decorate(self, reply: dict) -> None:
            reply["events"] = sandbox.drain_events()
            reply["stdout"] = text.drain()

        def send(self, message: dict) -> None:
            if message.get("op") != "reply":  # requests (callbacks) carry the same news
                self.decorate(message)
            super().send(message)

        def _serve_call(self, message: dict):
            value = super()._serve_call(message)
            if not message.get("call"):
                tensors = remote.flatten_tensors(value)
                value = remote.replace_tensors(value, [t.detach() for t in tensors])
            return value

    peer = WorkerPeer(wire.Channel(read_fd, write_fd), "worker")

    def run_cell(message: dict) -> dict:
        outputs.clear()
        result = shell.run_cell(str(message.get("source", "")), store_history=False)
        _figures(outputs)
        error = result.error_before_exec or result.error_in_exec
        reply = {"outputs": list(outputs)}
        if error is not None:
            info = remote.describe_error(error)
            lines = traceback.format_exception(type(error), error, error.__traceback__)
            keep = [line for line in lines if "site-packages" not in line and "mbrl_course/grading" not in line]
            info["traceback"] = "".join(keep)[-6000:]
            reply["error"] = info
        return reply

    def lookup(message: dict) -> dict:
        names = [n for n in message.get("names", []) if isinstance(n, str)]
        return {name: shell.user_ns[name] for name in names if name in shell.user_ns}

    def get_attribute(message: dict):
        return getattr(message.get("target"), str(message.get("name")))

    peer.handlers.update({"exec": run_cell, "lookup": lookup, "getattr": get_attribute})
    torch.set_num_threads(max(1, min(torch.get_num_threads(), int(cfg.get("threads", 2)))))
    peer.send({"op": "hello", "layers": layers, "pid": os.getpid()})
    while True:
        try:
            message = peer.channel.recv(None, peer.resolve)
        except wire.WireError:
            break
        if not isinstance(message, dict) or message.get("op") == "quit":
            break
        try:
            peer.serve_one(message)
        except wire.WireError:
            break
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
