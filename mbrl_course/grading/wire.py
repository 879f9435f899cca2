"""The wire between the grader and a student's sandboxed process: frames of data, never code.

Only plain data crosses: ``None``, bools, numbers, strings, lists, tuples and dicts of them,
torch tensors (any CPU dtype of :data:`DTYPES`) and numpy arrays. A frame is a JSON header plus
the tensors' raw bytes::

    [8 bytes: header length][8 bytes: number of buffers][8 bytes per buffer: its length]
    [header: JSON][buffer 0][buffer 1]...

Decoding builds tensors with ``torch.frombuffer`` after checking that each buffer has exactly
the bytes its dtype and shape need; there is no pickle anywhere, so a malicious peer can send
wrong data but never make the reader run code. Frames larger than ``max_bytes`` are refused
before anything is allocated.

Things that are not data (a function the grader passes, an object of the student's, a
``torch.Generator``) are replaced by *markers* — small dicts such as ``{"__cb__": 3}`` — that
:mod:`mbrl_course.grading.remote` creates and resolves on each side.
"""

from __future__ import annotations

import json
import math
import os
import select
import struct
import time
from typing import Any

import numpy as np
import torch

DTYPES = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
                  torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)
}
"""Tensor dtypes that may cross, by name."""
NUMPY_DTYPES = {"float16", "float32", "float64", "complex64", "complex128", "uint8", "int8", "int16", "int32",
                "int64", "bool"}
MAX_BYTES = 512 * 2**20
"""Largest frame accepted (512 MiB): more is refused before it is read."""
MARKER_KEYS = frozenset({"__cb__", "__h__", "__gen__", "__dtype__", "__device__", "__opaque__"})
"""Keys of the markers :mod:`remote` puts in place of things that are not data."""


class WireError(RuntimeError):
    """A frame could not be sent or read: broken, too large, or the peer is gone."""


class PeerTimeout(WireError):
    """No frame arrived in time."""


# ------------------------------------------------------------------------------------ encoding
def encode(value: Any, buffers: list[bytes], mark=None) -> Any:
    """The JSON-able form of ``value``; tensors' bytes are appended to ``buffers``.

    ``mark(value)`` is asked for anything that is not data; it returns a marker dict or raises
    :class:`TypeError`.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**62 else {"__bigint__": str(value)}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, torch.Tensor) and type(value) in (torch.Tensor, torch.nn.Parameter):
        return _encode_tensor(value, buffers)
    if isinstance(value, np.ndarray) and value.dtype.name in NUMPY_DTYPES:
        data = np.ascontiguousarray(value)
        buffers.append(data.tobytes())
        return {"__np__": len(buffers) - 1, "dtype": data.dtype.name, "shape": list(data.shape)}
    if isinstance(value, np.generic) and value.dtype.name in NUMPY_DTYPES:
        return encode(value.item(), buffers, mark)
    if isinstance(value, torch.Size):
        return {"__tuple__": [int(v) for v in value]}
    if isinstance(value, tuple):  # named tuples arrive as plain tuples
        return {"__tuple__": [encode(v, buffers, mark) for v in value]}
    if isinstance(value, list):
        return [encode(v, buffers, mark) for v in value]
    if isinstance(value, dict) and all(isinstance(k, (str, int)) for k in value):
        return {"__dict__": [[encode(k, buffers, mark), encode(v, buffers, mark)] for k, v in value.items()]}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if mark is None:
        raise TypeError(f"a {type(value).__name__} cannot cross to the other process")
    return {key: encode(item, buffers) for key, item in mark(value).items()}


def _encode_tensor(tensor: torch.Tensor, buffers: list[bytes]) -> dict:
    name = str(tensor.dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise TypeError(f"a tensor of dtype {tensor.dtype} cannot cross to the other process")
    if tensor.is_sparse or tensor.layout != torch.strided:
        raise TypeError("a sparse tensor cannot cross to the other process")
    data = tensor.detach().to("cpu").contiguous()
    if data.dtype == torch.bfloat16:  # numpy has no bfloat16: send its bits
        raw = data.view(torch.int16).numpy().tobytes()
    else:
        raw = data.resolve_conj().resolve_neg().numpy().tobytes()
    buffers.append(raw)
    return {"__t__": len(buffers) - 1, "dtype": name, "shape": list(data.shape), "grad": bool(tensor.requires_grad)}


def decode(value: Any, buffers: list[bytes], resolve=None) -> Any:
    """Inverse of :func:`encode`; ``resolve(marker)`` turns markers back into objects."""
    if isinstance(value, list):
        return [decode(v, buffers, resolve) for v in value]
    if not isinstance(value, dict):
        return value
    if "__t__" in value:
        return _decode_tensor(value, buffers)
    if "__np__" in value:
        dtype = value.get("dtype")
        if dtype not in NUMPY_DTYPES:
            raise WireError(f"unknown array dtype {dtype!r}")
        shape = _shape(value.get("shape"))
        raw = _buffer(buffers, value["__np__"], math.prod(shape) * np.dtype(dtype).itemsize)
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if "__tuple__" in value:
        return tuple(decode(v, buffers, resolve) for v in value["__tuple__"])
    if "__dict__" in value:
        return {decode(k, buffers, resolve): decode(v, buffers, resolve) for k, v in value["__dict__"]}
    if "__bigint__" in value:
        return int(value["__bigint__"])
    if "__float__" in value:
        return float(value["__float__"])
    if "__dtype__" in value:
        name = value["__dtype__"]
        if name not in DTYPES and name not in ("float", "double", "long", "int"):
            raise WireError(f"unknown dtype {name!r}")
        return getattr(torch, name)
    if "__device__" in value:
        return torch.device(str(value["__device__"]))
    if resolve is not None and MARKER_KEYS & value.keys():
        return resolve(value, buffers)
    raise WireError(f"unknown marker {sorted(value)[:3]}")


def _shape(shape) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(isinstance(s, int) and 0 <= s < 2**40 for s in shape):
        raise WireError(f"bad tensor shape {shape!r}")
    return tuple(shape)


def _buffer(buffers: list[bytes], index, nbytes: int) -> bytes:
    if not isinstance(index, int) or not 0 <= index < len(buffers):
        raise WireError(f"bad buffer index {index!r}")
    raw = buffers[index]
    if len(raw) != nbytes:
        raise WireError(f"buffer {index} has {len(raw)} bytes; its dtype and shape need {nbytes}")
    return raw


def _decode_tensor(value: dict, buffers: list[bytes]) -> torch.Tensor:
    name = value.get("dtype")
    if name not in DTYPES:
        raise WireError(f"unknown tensor dtype {name!r}")
    dtype = DTYPES[name]
    shape = _shape(value.get("shape"))
    itemsize = torch.empty((), dtype=dtype).element_size()
    raw = _buffer(buffers, value["__t__"], math.prod(shape) * itemsize)
    if not raw:
        tensor = torch.empty(shape, dtype=dtype)
    elif dtype == torch.bfloat16:
        tensor = torch.frombuffer(bytearray(raw), dtype=torch.int16).view(torch.bfloat16).reshape(shape)
    else:
        tensor = torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)
    if value.get("grad") and tensor.is_floating_point():
        tensor.requires_grad_(True)
    return tensor


# ------------------------------------------------------------------------------------ frames
class Channel:
    """Frames over a pair of file descriptors (pipes), with a size cap and timeouts."""

    def __init__(self, read_fd: int, write_fd: int, max_bytes: int = MAX_BYTES) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.max_bytes = max_bytes

    def send(self, message: Any, mark=None) -> None:
        buffers: list[bytes] = []
        header = json.dumps(encode(message, buffers, mark), separators=(",", ":")).encode()
        prefix = struct.pack(f"<QQ{len(buffers)}Q", len(header), len(buffers), *(len(b) for b in buffers))
        total = len(prefix) + len(header) + sum(len(b) for b in buffers)
        if total > self.max_bytes:
            raise WireError(f"a message of {total / 2**20:.0f} MiB is over the limit of {self.max_bytes / 2**20:.0f} MiB")
        try:
            for part in (prefix, header, *buffers):
                view = memoryview(part)
                while view:
                    written = os.write(self.write_fd, view)
                    view = view[written:]
        except OSError as err:
            raise WireError(f"the other process is gone ({err.strerror})") from None

    def recv(self, timeout: float | None = None, resolve=None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        header_len, count = struct.unpack("<QQ", self._read(16, deadline))
        if count > 100_000 or header_len > self.max_bytes:
            raise WireError("a malformed message (bad header)")
        sizes = struct.unpack(f"<{count}Q", self._read(8 * count, deadline)) if count else ()
        if header_len + sum(sizes) > self.max_bytes:
            raise WireError(f"a message of {(header_len + sum(sizes)) / 2**20:.0f} MiB is over the limit "
                            f"of {self.max_bytes / 2**20:.0f} MiB")
        try:
            header = json.loads(self._read(header_len, deadline))
        except ValueError as err:
            raise WireError(f"a malformed message ({err})") from None
        buffers = [self._read(size, deadline) for size in sizes]
        return decode(header, buffers, resolve)

    def _read(self, size: int, deadline: float | None) -> bytes:
        chunks, remaining = [], size
        while remaining:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.read_fd], [], [], wait)
            if not ready:
                raise PeerTimeout("no answer in time")
            try:
                chunk = os.read(self.read_fd, min(remaining, 1 << 20))
            except InterruptedError:
                continue
            if not chunk:
                raise WireError("the other process closed the connection")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
