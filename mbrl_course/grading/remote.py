"""Calling a student's functions in another process as if they were here.

The grader (the *checker*) never runs a student's code; the student's notebook runs in a
sandboxed *worker* (:mod:`mbrl_course.grading.worker`). Test cells run in the checker and see
each of the student's names as a :class:`RemoteObject`: calling it, calling its methods or
reading its attributes sends a request over a :class:`~mbrl_course.grading.wire.Channel` and
waits for the answer. What crosses is data (tensors, numbers, strings, containers) plus:

- **callables the checker passes** (objectives, planners, models): the worker gets a proxy that
  calls back; the student's code can call it with data, and nothing else (no attributes);
- **torch.Generator**: its state is sent; the final state comes back and is set on the
  checker's generator, so "draws from the generator it is given" can be checked;
- **the student's objects** (functions, classes, instances, modules): they stay in the worker
  and come back as handles (:class:`RemoteObject`) that the checker may call and inspect;
- **gradients**: a call whose tensor arguments require grad is an ``autograd.Function`` whose
  backward asks the other side for the vector-Jacobian product, in both directions (a check
  can differentiate through a student's function; a student's optimiser can differentiate
  through a log-likelihood the checker passes).

An exception in the student's code arrives as :class:`~mbrl_course.grading.report.StudentError`
(``NotImplementedError`` and the checks' own :class:`GradingError`, raised inside a callback, keep
their type), so that a test cell prints the same messages as in the student's notebook.
"""

from __future__ import annotations

import contextlib
import itertools
import traceback
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from mbrl_course.grading.report import GradingError, StudentError
from mbrl_course.grading.wire import Channel, PeerTimeout, WireError, decode

MAX_GRAPHS = 256
"""Calls whose autograd graph each side keeps for a later backward (oldest dropped first)."""
CELL_PREFIXES = ("<cell ", "<ipython-input-")
"""Filenames under which notebook cells are compiled: frames of the student's code."""


_ACTIVE: list[Any] = []


@contextlib.contextmanager
def active(session: Any):
    """While the block runs, :func:`current` is ``session`` (the sandbox the test cell talks to)."""
    _ACTIVE.append(session)
    try:
        yield session
    finally:
        _ACTIVE.pop()


def current() -> Any:
    """The sandbox session a test cell is running against in this process, or ``None`` (in a notebook)."""
    return _ACTIVE[-1] if _ACTIVE else None


class SandboxStopped(BaseException):
    """The student's process is gone (a limit stopped it, or it broke the connection).

    A ``BaseException``: it must not be caught as the student's error by a check that catches
    ``Exception``; :class:`~mbrl_course.grading.report.Report` records it as a failed part.
    """


class RemoteTimeout(Exception):
    """A request got no answer within its time."""


def flatten_tensors(value: Any) -> list[torch.Tensor]:
    """Tensors in ``value`` in the order :func:`~mbrl_course.grading.wire.encode` visits them."""
    found: list[torch.Tensor] = []

    def visit(v):
        if isinstance(v, torch.Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            for item in v:
                visit(item)
        elif isinstance(v, dict):
            for key, item in v.items():
                visit(key)
                visit(item)

    visit(value)
    return found


def replace_tensors(value: Any, tensors: list[torch.Tensor]) -> Any:
    """``value`` with its tensors replaced, in :func:`flatten_tensors` order, by ``tensors``."""
    source = iter(tensors)

    def rebuild(v):
        if isinstance(v, torch.Tensor):
            return next(source)
        if isinstance(v, tuple):
            return tuple(rebuild(item) for item in v)
        if isinstance(v, list):
            return [rebuild(item) for item in v]
        if isinstance(v, dict):
            return {rebuild(k): rebuild(item) for k, item in v.items()}
        return v

    return rebuild(value)


def describe_error(err: BaseException) -> dict:
    """What the other side needs to know about an exception: type, message, the student's line."""
    info = getattr(err, "info", None) if isinstance(err, _CallbackError) else None
    where = ""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        if (frame.filename or "").startswith(CELL_PREFIXES):
            code = (frame.line or "").strip()
            where = f" (in {frame.name}, line {frame.lineno}: {code})" if code else f" (in {frame.name})"
            break
    text = str(err)
    kind = ""
    if isinstance(err, MemoryError) or "can't allocate memory" in text or "DefaultCPUAllocator" in text:
        kind = "memory"
    elif isinstance(err, PermissionError) and text.startswith("sandbox:"):
        kind = "sandbox"
    elif isinstance(err, KeyboardInterrupt):
        kind = "interrupted"
    if info is not None:  # the checker's own error, passed through the student's code
        return {"type": str(info.get("type", "Exception")), "message": text[:4000], "where": where, "kind": "",
                "from_grader": True}
    return {"type": type(err).__name__, "message": text[:4000], "where": where, "kind": kind, "from_grader": False}


class _CallbackError(Exception):
    """Raised in the worker where a callable of the checker raised (a GradingError keeps its text)."""

    from_grader = True

    def __init__(self, info: dict) -> None:
        super().__init__(str(info.get("message", "")))
        self.info = info


class Peer:
    """One end of the connection: sends requests, serves the other side's requests meanwhile.

    ``side`` is ``"checker"`` or ``"worker"``. The checker exports only callables (the student's
    code may call them) and generators; the worker exports anything, and also serves ``getattr``.
    """

    def __init__(self, channel: Channel, side: str) -> None:
        if side not in ("checker", "worker"):
            raise ValueError(f"side: expected 'checker' or 'worker', got {side!r}")
        self.channel = channel
        self.side = side
        self.exports: dict[int, Any] = {}
        self._export_ids: dict[int, int] = {}
        self._ids = itertools.count(1)
        self.graphs: OrderedDict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = OrderedDict()
        self.handlers: dict[str, Callable[[dict], Any]] = {"call": self._serve_call, "backward": self._serve_backward}
        self.on_message: Callable[[dict], None] | None = None
        self.timeout: float | None = None
        """Seconds a request may wait for its answer (``None``: forever), set by the checker."""
        self._pending_generators: list[tuple[int, torch.Generator]] = []

    # ---------------------------------------------------------------- markers
    def _export(self, value: Any) -> int:
        key = id(value)
        ref = self._export_ids.get(key)
        if ref is None or self.exports.get(ref) is not value:
            ref = next(self._ids)
            self.exports[ref] = value
            self._export_ids[key] = ref
        return ref

    def mark(self, value: Any) -> dict:
        """The marker for something that is not data."""
        if isinstance(value, RemoteObject) and value._peer is self:
            return {"__h__": value._ref, "home": "remote"}
        if isinstance(value, torch.Generator):
            if self.side == "checker":
                return {"__gen__": self._export(value), "state": value.get_state()}
            return {"__h__": self._export(value), "home": "sender", "type": "Generator", "callable": False}
        if self.side == "checker" and not callable(value):
            raise TypeError(f"a {type(value).__name__} cannot be passed to the student's code; pass data or a function")
        return {"__h__": self._export(value), "home": "sender", "type": type(value).__name__,
                "callable": callable(value)}

    def resolve(self, marker: dict, buffers) -> Any:
        """The object a marker from the other side stands for."""
        if "__gen__" in marker and self.side == "worker":
            generator = torch.Generator()
            generator.set_state(decode(marker["state"], buffers))
            self._pending_generators.append((int(marker["__gen__"]), generator))
            return generator
        ref = marker.get("__h__")
        if not isinstance(ref, int):
            raise WireError(f"bad marker {marker!r}")
        if marker.get("home") == "remote":  # one of ours, coming back
            if ref not in self.exports:
                raise WireError(f"unknown reference {ref}")
            return self.exports[ref]
        return RemoteObject(self, ref, str(marker.get("type", "object"))[:80], bool(marker.get("callable")))

    # ---------------------------------------------------------------- sending
    def send(self, message: dict) -> None:
        self.channel.send(message, self.mark)

    def request(self, message: dict) -> Any:
        """Send a request; serve the other side's requests until its reply; return the value."""
        self.send(message)
        while True:
            try:
                incoming = self.channel.recv(self.wait(), self.resolve)
            except PeerTimeout:
                self.on_timeout()
                continue
            if not isinstance(incoming, dict):
                raise WireError("a malformed message")
            if self.on_message is not None:
                self.on_message(incoming)
            if incoming.get("op") == "reply":
                return self._unpack_reply(incoming)
            self.serve_one(incoming)

    def wait(self) -> float | None:
        """Seconds to wait for the next message (``None``: forever)."""
        return self.timeout

    def on_timeout(self) -> None:
        """No message came in time: raise, or return to wait again (the checker interrupts first)."""
        raise RemoteTimeout(f"no answer within {self.timeout} s")

    def _unpack_reply(self, reply: dict) -> Any:
        for gid, state in (reply.get("gens") or {}).items():
            generator = self.exports.get(int(gid))
            if isinstance(generator, torch.Generator) and isinstance(state, torch.Tensor):
                try:
                    generator.set_state(state)
                except (RuntimeError, ValueError):
                    raise GradingError("the student's code left the generator in a broken state") from None
        if reply.get("ok"):
            return reply.get("value")
        info = reply.get("error") or {}
        if not isinstance(info, dict):
            info = {}
        kind = info.get("type", "Exception")
        message = str(info.get("message", ""))
        if self.side == "worker" or info.get("from_grader") and kind in ("GradingError", "AssertionError"):
            # the worker re-raises the checker's errors inside the student's code as they were
            error = _CallbackError(info) if self.side == "worker" else GradingError(message)
            raise error
        if kind == "NotImplementedError":
            raise NotImplementedError(message)
        if info.get("kind") == "interrupted":
            raise StudentError("TimeoutError", "it ran past the time limit and was interrupted",
                               str(info.get("where", ""))[:400], "time")
        raise StudentError(str(kind)[:80], message, str(info.get("where", ""))[:400], str(info.get("kind", "")))

    # ---------------------------------------------------------------- calls (with autograd)
    def call(self, op: str, target: Any, args: tuple, kwargs: dict) -> Any:
        """Call ``target`` on the other side (``op`` "call"), differentiably where inputs require grad."""
        inputs = flatten_tensors((args, kwargs))
        grad_inputs = [t for t in inputs if t.requires_grad] if torch.is_grad_enabled() else []
        if not grad_inputs:
            plain = replace_tensors((args, kwargs), [t.detach() for t in inputs])
            return self.request({"op": op, "target": target, "args": plain[0], "kwargs": plain[1], "call": 0})
        box = {"peer": self, "op": op, "target": target, "structure": (args, kwargs), "inputs": inputs}
        outputs = _RemoteCall.apply(box, *grad_inputs)
        return replace_tensors(box["value"], list(outputs))

    def _forward(self, box: dict) -> tuple[torch.Tensor, ...]:
        cid = next(self._ids)
        sent = [t.detach().requires_grad_(t.requires_grad and t.is_floating_point()) for t in box["inputs"]]
        args, kwargs = replace_tensors(box["structure"], sent)
        value = self.request({"op": box["op"], "target": box["target"], "args": args, "kwargs": kwargs, "call": cid})
        box["value"], box["call"] = value, cid
        return tuple(flatten_tensors(value))

    def backward(self, cid: int, grads: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        return self.request({"op": "backward", "call": cid, "grads": list(grads)})

    # ---------------------------------------------------------------- serving
    def serve_one(self, message: dict) -> None:
        """Answer one request of the other side."""
        op = message.get("op")
        handler = self.handlers.get(op)
        generators, self._pending_generators = self._pending_generators, []
        try:
            if handler is None:
                raise PermissionError(f"request {op!r} is not served here")
            value = handler(message)
        except SandboxStopped:
            raise
        except BaseException as err:  # noqa: BLE001 (the other side gets the error)
            reply = {"op": "reply", "ok": False, "error": describe_error(err)}
        else:
            reply = {"op": "reply", "ok": True, "value": value}
        if generators:
            reply["gens"] = {str(gid): g.get_state() for gid, g in generators}
        self.decorate(reply)
        try:
            self.send(reply)
        except (TypeError, WireError) as err:  # a value that cannot cross
            failure = {"op": "reply", "ok": False,
                       "error": {"type": type(err).__name__, "message": f"the result cannot be graded: {err}"}}
            self.decorate(failure)
            self.send(failure)

    def decorate(self, reply: dict) -> None:
        """Add to an outgoing reply what this side reports with each (the worker's sandbox events)."""

    def _target(self, message: dict) -> Any:
        target = message.get("target")
        if self.side == "checker" and (isinstance(target, RemoteObject) or not callable(target)):
            raise PermissionError("only the functions the grader passed can be called")
        return target

    def _serve_call(self, message: dict) -> Any:
        fn = self._target(message)
        if not callable(fn):
            raise TypeError(f"'{type(fn).__name__}' object is not callable")
        args, kwargs = message.get("args") or [], message.get("kwargs") or {}
        cid = int(message.get("call") or 0)
        inputs = [t for t in flatten_tensors((args, kwargs)) if t.requires_grad]
        with torch.enable_grad():  # as in a notebook: the student's code may train with autograd
            value = fn(*args, **kwargs)
        if cid and inputs:
            outputs = flatten_tensors(value)
            if any(t.requires_grad for t in outputs):
                self.graphs[cid] = (inputs, outputs)
                while len(self.graphs) > MAX_GRAPHS:
                    self.graphs.popitem(last=False)
        return value

    def _serve_backward(self, message: dict) -> list:
        cid = int(message.get("call") or 0)
        if cid not in self.graphs:
            raise RuntimeError("backward through a call whose graph is gone (called backward twice?)")
        inputs, outputs = self.graphs[cid]
        grads = message.get("grads") or []
        pairs = [(o, g) for o, g in zip(outputs, grads) if o.requires_grad and isinstance(g, torch.Tensor)]
        if not pairs:
            return [None] * len(inputs)
        result = torch.autograd.grad([o for o, _ in pairs], inputs, [g.to(o.dtype) for o, g in pairs],
                                     allow_unused=True, retain_graph=True)
        return [None if g is None else g.detach() for g in result]


class _RemoteCall(torch.autograd.Function):
    """A call to the other process as one node of the autograd graph."""

    @staticmethod
    def forward(ctx, box, *grad_inputs):
        outputs = box["peer"]._forward(box)
        ctx.box = box
        ctx.count = len(grad_inputs)
        ctx.differentiable = [bool(o.requires_grad and o.is_floating_point()) for o in outputs]
        outputs = tuple(o.detach() for o in outputs)
        ctx.mark_non_differentiable(*[o for o, d in zip(outputs, ctx.differentiable) if not d])
        return outputs

    @staticmethod
    def backward(ctx, *grads):
        box = ctx.box
        grads = [g if d else None for g, d in zip(grads, ctx.differentiable)]
        input_grads = box["peer"].backward(box["call"], grads)
        if not isinstance(input_grads, list) or len(input_grads) != ctx.count:
            raise GradingError("the gradient that came back does not fit the inputs")
        return (None, *input_grads)


class RemoteObject:
    """A function, class or object of the student's, living in the sandboxed worker."""

    def __init__(self, peer: Peer, ref: int, type_name: str, is_callable: bool) -> None:
        object.__setattr__(self, "_peer", peer)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_callable", is_callable)

    def __call__(self, *args, **kwargs):
        return self._peer.call("call", self, args, kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._peer.request({"op": "getattr", "target": self, "name": name})

    def __setattr__(self, name, value):
        raise AttributeError("the student's objects are read-only from the grader")

    def __repr__(self) -> str:
        return f"<the student's {self._type}>"
