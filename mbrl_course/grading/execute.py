"""Grading a notebook without running the student's code in the grader: two processes.

nbgrader's own ``Execute`` runs the whole notebook, test cells included, in one kernel, so an
answer cell can change the objects that compute the score (``Report.score = ...``), switch off
checks (``sys.setprofile(None)``) or read the hidden checks. Here instead (the
:class:`SandboxedExecute` preprocessor, configured in ``nbgrader_config.py``):

- the student's cells (answers and free cells) and the read-only set-up cells run in a
  :class:`Sandbox`: a separate process walled in by :mod:`mbrl_course.grading.sandbox` (memory,
  CPU and wall time, no network, no writes outside its own copy of the submission folder, no
  access to the reference implementation or the instructor's files);
- the test cells, with their hidden tests, run here, in the *checker*, which never executes
  the student's code: it runs the trusted set-up cells itself and sees the student's functions
  and objects as proxies (:mod:`mbrl_course.grading.remote`). The score a test cell prints is
  computed by the checker's own :class:`~mbrl_course.grading.report.Report`.

The cell sources that are trusted come from the gradebook (what ``generate_assignment``
recorded), never from the submitted file. What happened (limits hit, things the sandbox
refused) is kept in :data:`RESULTS` for :func:`mbrl_course.grading.pipeline.autograde`.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from mbrl_course.grading import remote
from mbrl_course.grading.report import StudentError
from mbrl_course.grading.sandbox import Limits, within
from mbrl_course.grading.wire import Channel, PeerTimeout, WireError

STARTUP_SECONDS = 120.0
"""How long the sandbox may take to start (import torch, matplotlib, IPython)."""
GRACE_SECONDS = 5.0
"""After an interrupt (a cell past its time), how long the student's code has to stop before it is killed."""
RESULTS: dict[tuple[str, str, str], dict] = {}
"""(student, assignment, notebook) -> what :class:`SandboxedExecute` saw: notes, limits hit, layers."""

_BOOT = ("import json, os, sys; sys.dont_write_bytecode = True; "
         "sys.path[:] = json.loads(os.environ['MBRL_SANDBOX'])['sys_path']; "
         "from mbrl_course.grading.worker import main; main()")


def module_paths(modules: list[str]) -> list[str]:
    """Where the modules' files are: a package's folder, a module's file (without importing them)."""
    paths = []
    for name in modules:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        if spec.submodule_search_locations:
            paths += [str(Path(p).resolve()) for p in spec.submodule_search_locations]
        elif spec.origin:
            paths.append(str(Path(spec.origin).resolve()))
    return paths


def _package_dir() -> Path:
    import mbrl_course

    return Path(mbrl_course.__file__).resolve().parent


class _CheckerPeer(remote.Peer):
    """The checker's end: deadlines, interrupts and the sandbox's news."""

    def __init__(self, channel: Channel, box: Sandbox) -> None:
        super().__init__(channel, "checker")
        self.box = box
        self.depth = 0
        self.deadline = 0.0
        self.interrupted_at: float | None = None

    def request(self, message: dict):
        box = self.box
        if box.stopped:
            raise remote.SandboxStopped(box.stopped)
        outermost = self.depth == 0
        if outermost:
            self.deadline = min(time.monotonic() + box.limits.cell_seconds, box.wall_deadline)
            self.interrupted_at = None
        self.depth += 1
        try:
            return super().request(message)
        except WireError as err:
            raise remote.SandboxStopped(box.died(str(err))) from None
        finally:
            self.depth -= 1

    def wait(self) -> float:
        end = self.deadline if self.interrupted_at is None else self.interrupted_at + GRACE_SECONDS
        return max(0.0, end - time.monotonic())

    def on_timeout(self) -> None:
        box = self.box
        if time.monotonic() >= box.wall_deadline:
            raise remote.SandboxStopped(box.kill(f"the submission's wall-time limit ({box.limits.wall_seconds:g} s) "
                                                 "was reached: it was stopped, later cells were not run"))
        if self.interrupted_at is None:
            self.interrupted_at = time.monotonic()
            box.note(f"{box.current} ran longer than {box.limits.cell_seconds:g} s and was interrupted")
            box.interrupt()
            return
        raise remote.SandboxStopped(box.kill(f"{box.current} ran past its time limit "
                                             f"({box.limits.cell_seconds:g} s) and did not stop when interrupted: "
                                             "it was killed, later cells were not run"))

    def _unpack_reply(self, reply: dict):
        try:
            return super()._unpack_reply(reply)
        except StudentError as err:
            if err.limit == "memory":
                self.box.note(f"{self.box.current} hit the memory limit ({self.box.limits.memory_mb} MiB)")
            raise


@dataclass
class Sandbox:
    """One student's notebook process, seen from the checker (use as a context manager)."""

    source_dir: Path
    """The submission folder; the sandbox works in a private copy of it."""
    limits: Limits = field(default_factory=Limits)
    blocked_modules: list[str] = field(default_factory=list)
    """The reference implementation of this assignment: not importable or readable inside."""
    course_root: Path | None = None
    """The course folder: only the package (and a virtual environment) in it are readable inside."""
    namespaces: bool = True
    landlock: bool = True
    preload: list[str] = field(default_factory=list)
    """Modules the student's process imports before the audit hook goes up (e.g. ``mujoco``, whose
    import loads plugins with ctypes, which the hook refuses afterwards)."""

    def __post_init__(self) -> None:
        self.stopped: str | None = None
        self.notes: list[str] = []
        self.events: list[str] = []
        self.layers: list[str] = []
        self.current = "the notebook"
        self.sink: io.StringIO | None = None
        self.process: subprocess.Popen | None = None
        self.scratch: Path | None = None
        self.wall_deadline = float("inf")

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="mbrl-grade-"))
        work = self.scratch / "submission"
        shutil.copytree(self.source_dir, work, symlinks=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        private = self.scratch / "home"
        for sub in ("tmp", "mpl", "ipython"):
            (private / sub).mkdir(parents=True)
        _seed_font_cache(private / "mpl")
        package = _package_dir()
        root = Path(self.course_root).resolve() if self.course_root is not None else None
        private_paths = []
        if root is not None:
            keep = {package, *(root / name for name in (".venv", "venv", ".device"))}
            private_paths = [str(p) for p in root.iterdir() if p.resolve() not in keep and not within(package, p.resolve())]
        to_worker, from_checker = os.pipe()
        from_worker, to_checker = os.pipe()
        config = {
            "fds": [to_worker, to_checker], "workdir": str(self.scratch), "cwd": str(work), "limits": self.limits.to_dict(),
            "blocked_modules": list(self.blocked_modules), "blocked_paths": module_paths(self.blocked_modules),
            "private_paths": private_paths, "package_dir": str(package),
            "course_root": str(root) if root is not None else "", "namespaces": self.namespaces,
            "landlock": self.landlock, "preload": list(self.preload), "threads": int(os.environ.get("MBRL_GRADING_THREADS", "2")),
            "sys_path": [p for p in sys.path if p not in ("", ".") and Path(p or ".").resolve() != Path.cwd()],
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOME": str(private), "TMPDIR": str(private / "tmp"), "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(private / "mpl"), "IPYTHONDIR": str(private / "ipython"),
            "NBGRADER_EXECUTION": "autograde", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
            "MBRL_SANDBOX": json.dumps(config),
        }
        for name in ("MBRL_COURSE_BUDGET", "MUJOCO_GL", "PYOPENGL_PLATFORM", "CI"):
            if name in os.environ:
                env[name] = os.environ[name]
        self._log = open(self.scratch / "worker.log", "wb")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT], cwd=work, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, pass_fds=(to_worker, to_checker), start_new_session=True)
        os.close(to_worker)
        os.close(to_checker)
        self.peer = _CheckerPeer(Channel(from_worker, from_checker), self)
        self.peer.on_message = self._on_message
        try:
            hello = self.peer.channel.recv(STARTUP_SECONDS)
        except (WireError, PeerTimeout) as err:
            self.kill("the sandbox did not start")
            raise RuntimeError(f"the grading sandbox did not start ({err}); its log:\n{self.log_tail()}") from None
        self.layers = list(hello.get("layers", [])) if isinstance(hello, dict) else []
        self.wall_deadline = time.monotonic() + self.limits.wall_seconds

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(WireError, OSError):
                self.peer.channel.send({"op": "quit"})
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group()
        for fd in (getattr(self, "peer", None) and (self.peer.channel.read_fd, self.peer.channel.write_fd)) or ():
            with contextlib.suppress(OSError):
                os.close(fd)
        if getattr(self, "_log", None) is not None:
            self._log.close()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def _kill_group(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def kill(self, reason: str) -> str:
        """Stop the student's process for ``reason``; later requests raise SandboxStopped(reason)."""
        if self.stopped is None:
            self.stopped = reason
            self.note(reason)
        self._kill_group()
        return self.stopped

    def interrupt(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGINT)

    def died(self, detail: str) -> str:
        """The connection broke: say why the process ended."""
        if self.stopped is not None:
            return self.stopped
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        reasons = {137: "it was killed (out of memory?)", 152: f"its CPU-time limit ({self.limits.cpu} s) was reached",
                   139: "it crashed (segmentation fault)", 134: "it aborted", 153: "it wrote a file over the size limit"}
        by_signal = {-signal.SIGKILL: 137, -signal.SIGXCPU: 152, -signal.SIGSEGV: 139, -signal.SIGABRT: 134,
                     -signal.SIGXFSZ: 153}
        code = by_signal.get(code, code)
        why = reasons.get(code, f"it exited (status {code})" if code is not None else f"it stopped answering ({detail})")
        return self.kill(f"the notebook's process stopped during {self.current}: {why}; later cells were not run")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self.scratch / "worker.log").read_bytes()[-chars:].decode(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ requests
    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def _on_message(self, message: dict) -> None:
        for event in message.get("events") or []:
            if isinstance(event, str):
                self.events.append(event[:300])
        text = message.get("stdout")
        if isinstance(text, str) and text and self.sink is not None:
            self.sink.write(text)

    def exec_cell(self, source: str, label: str) -> tuple[str, dict]:
        """Run a cell in the student's process: (printed text, reply with outputs and error)."""
        self.current = label
        self.sink = io.StringIO()
        try:
            reply = self.peer.request({"op": "exec", "source": source})
        finally:
            text, self.sink = self.sink.getvalue(), None
        reply = reply if isinstance(reply, dict) else {}
        error = reply.get("error")
        if isinstance(error, dict) and error.get("kind") == "memory":
            self.note(f"{label} hit the memory limit ({self.limits.memory_mb} MiB)")
        elif isinstance(error, dict) and error.get("kind") == "interrupted" and not any(label in n for n in self.notes):
            self.note(f"{label} was interrupted")
        return text, reply

    def lookup(self, names: list[str]) -> dict:
        value = self.peer.request({"op": "lookup", "names": names})
        return value if isinstance(value, dict) else {}

    def reference_events(self, since: int) -> list[str]:
        """Attempts to use the reference implementation among the events from index ``since`` on."""
        return [e for e in self.events[since:] if "reference implementation" in e]


def _seed_font_cache(target: Path) -> None:
    """Copy matplotlib's font list into the sandbox, so that it is not rebuilt for every student."""
    try:
        import matplotlib

        for cached in Path(matplotlib.get_cachedir()).glob("fontlist-*.json"):
            shutil.copy2(cached, target / cached.name)
    except Exception:  # noqa: BLE001 (a cold cache only costs time)
        pass


# ------------------------------------------------------------------------------ test cells
def _loaded_names(tree: ast.AST) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def run_checker_cell(source: str, namespace: dict, box: Sandbox, label: str) -> list[dict]:
    """Run a test cell here with the student's names as proxies; return its nbformat outputs."""
    outputs: list[dict] = []
    out = io.StringIO()
    box.current = label
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        return [_error_output(err)]
    wanted = sorted(_loaded_names(tree) - namespace.keys() - set(dir(builtins)))
    local = dict(namespace)
    value, error = None, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), remote.active(box):
        box.sink = out
        try:
            if wanted:
                local.update(box.lookup(wanted))
            last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
            exec(compile(tree, f"<test {label}>", "exec"), local)  # noqa: S102 (the instructor's test code)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), f"<test {label}>", "eval"), local)  # noqa: S307
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # noqa: BLE001 (a failing test cell scores 0, as in nbgrader)
            error = err
        finally:
            box.sink = None
    if out.getvalue():
        outputs.append({"output_type": "stream", "name": "stdout", "text": out.getvalue()})
    if error is not None:
        outputs.append(_error_output(error))
    elif value is not None:
        outputs.append({"output_type": "execute_result", "execution_count": None, "metadata": {},
                        "data": {"text/plain": repr(value)}})
    return outputs


def _error_output(err: BaseException) -> dict:
    lines = traceback.format_exception(type(err), err, err.__traceback__)
    return {"output_type": "error", "ename": type(err).__name__, "evalue": str(err)[:2000],
            "traceback": [line.rstrip("\n") for line in lines][-30:]}


def _worker_outputs(text: str, reply: dict) -> list[dict]:
    outputs: list[dict] = []
    if text:
        outputs.append({"output_type": "stream", "name": "stdout", "text": text})
    for item in reply.get("outputs") or []:
        if isinstance(item, dict) and isinstance(item.get("data"), dict):
            data = {str(k): v for k, v in item["data"].items() if isinstance(v, str)}
            outputs.append({"output_type": "display_data", "data": data, "metadata": {}})
    error = reply.get("error")
    if isinstance(error, dict):
        outputs.append({"output_type": "error", "ename": str(error.get("type", "Error"))[:80],
                        "evalue": str(error.get("message", ""))[:2000],
                        "traceback": str(error.get("traceback", "")).splitlines()[-40:]})
    return outputs


@dataclass
class TrustedCell:
    """A cell as the instructor wrote it (from the gradebook)."""

    source: str
    locked: bool
    grade: bool
    solution: bool


def trusted_cells(db_url: str, notebook: str, assignment: str) -> dict[str, TrustedCell]:
    """grade id -> :class:`TrustedCell` for every cell nbgrader recorded when the assignment was released."""
    from nbgrader.api import Gradebook, MissingEntry

    cells: dict[str, TrustedCell] = {}
    with Gradebook(db_url) as gb:
        try:
            nb = gb.find_notebook(notebook, assignment)
        except MissingEntry:
            return cells
        grades = {c.name for c in nb.grade_cells}
        solutions = {c.name for c in nb.solution_cells}
        for cell in nb.source_cells:
            cells[cell.name] = TrustedCell(cell.source, bool(cell.locked), cell.name in grades, cell.name in solutions)
    return cells


@contextlib.contextmanager
def _kept_global_state():
    """Undo what a notebook's set-up and test cells change in the grader's process: torch's default
    dtype, thread count and grad mode, and the global random generators (the next notebook,
    another student's, must start from the same state)."""
    import random

    import numpy as np
    import torch

    saved = (torch.get_default_dtype(), torch.get_num_threads(), torch.is_grad_enabled(),
             torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        yield
    finally:
        torch.set_default_dtype(saved[0])
        torch.set_num_threads(saved[1])
        torch.set_grad_enabled(saved[2])
        torch.set_rng_state(saved[3])
        np.random.set_state(saved[4])
        random.setstate(saved[5])


def grade_notebook(nb, box: Sandbox, trusted: dict[str, TrustedCell]) -> None:
    """Run every code cell of ``nb`` where it belongs and put the outputs in place (in place)."""
    import nbformat

    namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
    with _kept_global_state():
        for index, cell in enumerate(nb.cells):
            if cell.get("cell_type") == "code":
                _grade_cell(index, cell, namespace, box, trusted)
                cell["outputs"] = [nbformat.from_dict(output) for output in cell.get("outputs", [])]


def _grade_cell(index: int, cell, namespace: dict, box: Sandbox, trusted: dict[str, TrustedCell]) -> None:
    """Run one code cell: a test cell here, every other one in the sandbox (set-up cells in both)."""
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    label = f"cell {grade_id or cell.get('id') or index}"
    spec = trusted.get(grade_id) if grade_id else None
    instructors = spec is not None and spec.locked and not spec.solution
    cell["outputs"] = []
    if instructors and spec.grade:
        cell["outputs"] = run_checker_cell(spec.source, namespace, box, label)
        return
    if box.stopped:
        cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": f"not run: {box.stopped}\n"}]
    else:
        try:
            text, reply = box.exec_cell(cell["source"], label)
            cell["outputs"] = _worker_outputs(text, reply)
        except (remote.SandboxStopped, remote.RemoteTimeout) as err:
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": f"not run: {err}\n"}]
    if instructors:  # a read-only set-up cell: the checker needs its names too
        _run_setup(spec.source, namespace, box, label)


def _run_setup(source: str, namespace: dict, box: Sandbox, label: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            exec(compile(source, f"<setup {label}>", "exec"), namespace)  # noqa: S102 (the instructor's code)
        except Exception as err:  # noqa: BLE001 (reported to the instructor, grading goes on)
            box.note(f"the grader could not run the read-only {label} itself: {type(err).__name__}: {err}")


# ------------------------------------------------------------------------------ nbgrader
try:
    from nbgrader.preprocessors import NbGraderPreprocessor
    from traitlets import Bool, Dict, Float, Integer, List, Unicode
except ImportError:  # nbgrader is an instructor's dependency (the course extra)
    NbGraderPreprocessor = None

if NbGraderPreprocessor is not None:
    class SandboxedExecute(NbGraderPreprocessor):
        """nbgrader's Execute, split in two: the student's cells in a sandbox, the tests in the grader."""

        memory_mb = Integer(Limits.memory_mb, help="memory of one submission's process, MiB").tag(config=True)
        wall_seconds = Float(Limits.wall_seconds, help="wall time of one submission, s").tag(config=True)
        cell_seconds = Float(Limits.cell_seconds, help="wall time of one cell or one call from a test, s").tag(
            config=True)
        file_mb = Integer(Limits.file_mb, help="largest file the student's code may write, MiB").tag(config=True)
        reference_modules = Dict(
            {}, help="assignment -> modules of the reference implementation the student must not use").tag(config=True)
        common_reference_modules = List(
            [], help="modules no assignment may use (added to reference_modules)").tag(config=True)
        namespaces = Bool(True, help="use Linux user/network/PID namespaces where available").tag(config=True)
        landlock = Bool(True, help="use Landlock file and network rules where available").tag(config=True)
        course_root = Unicode("", help="the course folder (default: found from the notebook's folder)").tag(
            config=True)
        preload_modules = List(
            [], help="modules imported in the student's process before the sandbox's audit hook (e.g. "
                     "mbrl_course.envs: MuJoCo loads its plugins with ctypes)").tag(config=True)

        def limits(self) -> Limits:
            return Limits(memory_mb=self.memory_mb, wall_seconds=self.wall_seconds, cell_seconds=self.cell_seconds,
                          file_mb=self.file_mb)

        def preprocess(self, nb, resources):
            from mbrl_course.grading import instructor

            info = resources["nbgrader"]
            folder = Path(resources.get("metadata", {}).get("path") or ".").resolve()
            root = Path(self.course_root) if self.course_root else _find_root(folder)
            if root is not None:
                instructor.set_course_root(root)
            assignment, notebook = info["assignment"], info["notebook"]
            blocked = list(self.common_reference_modules) + list(self.reference_modules.get(assignment, []))
            trusted = trusted_cells(info["db_url"], notebook, assignment)
            box = Sandbox(folder, self.limits(), blocked, root, self.namespaces, self.landlock,
                          list(self.preload_modules))
            with box:
                grade_notebook(nb, box, trusted)
            notes = list(box.notes) + [f"refused by the sandbox: {e}" for e in dict.fromkeys(box.events)]
            RESULTS[(info["student"], assignment, notebook)] = {
                "notes": notes, "stopped": box.stopped, "layers": box.layers}
            return nb, resources


def _find_root(folder: Path) -> Path | None:
    for candidate in (folder, *folder.parents):
        if (candidate / "nbgrader_config.py").is_file():
            return candidate
    return None
