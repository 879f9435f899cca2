"""The grader's two processes: the wire (data only), proxies across it, and the sandbox's walls.

The sandbox runs here for real (a worker process per module fixture): what it refuses is tried
from inside, as a student's cell would; layers the machine lacks (Landlock, namespaces) are
skipped with a reason, the audit hook and the limits are always there.
"""

from __future__ import annotations

import os
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from mbrl_course.grading import remote, sandbox, wire
from mbrl_course.grading.execute import Sandbox
from mbrl_course.grading.report import GradingError, StudentError

REPO = Path(__file__).resolve().parents[1]
LAYERS = sandbox.layers_available()


# ------------------------------------------------------------------------------ the wire
def _roundtrip(value):
    read_fd, write_fd = os.pipe()
    try:
        channel = wire.Channel(read_fd, write_fd)
        channel.send(value)
        return channel.recv(timeout=5)
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_data_crosses_exactly():
    value = {"a": torch.arange(6, dtype=torch.float64).reshape(2, 3).T, "b": (1, 2.5, None, "x", True),
             "c": [torch.tensor(3, dtype=torch.int64), np.arange(3.0)], 7: torch.zeros(0, 2),
             "d": torch.tensor([1.5], dtype=torch.bfloat16), "e": float("nan"), "f": 2**80, "g": torch.float32}
    back = _roundtrip(value)
    assert torch.equal(back["a"], value["a"]) and back["a"].dtype == torch.float64
    assert back["b"] == (1, 2.5, None, "x", True) and isinstance(back["b"], tuple)
    assert torch.equal(back["c"][0], value["c"][0]) and np.array_equal(back["c"][1], value["c"][1])
    assert back[7].shape == (0, 2) and back["d"].dtype == torch.bfloat16 and float(back["d"]) == 1.5
    assert back["e"] != back["e"] and back["f"] == 2**80 and back["g"] is torch.float32


def test_objects_do_not_cross_without_a_marker():
    with pytest.raises(TypeError, match="cannot cross"):
        _roundtrip({"f": lambda: 1})


def test_a_frame_whose_bytes_do_not_fit_its_shape_is_refused():
    header = b'{"__t__":0,"dtype":"float64","shape":[4],"grad":false}'
    frame = struct.pack("<QQQ", len(header), 1, 8) + header + b"\0" * 8
    read_fd, write_fd = os.pipe()
    os.write(write_fd, frame)
    with pytest.raises(wire.WireError, match="need 32"):
        wire.Channel(read_fd, write_fd).recv(timeout=5)
    os.close(read_fd)
    os.close(write_fd)


def test_a_frame_over_the_size_limit_is_refused_before_it_is_read():
    read_fd, write_fd = os.pipe()
    os.write(write_fd, struct.pack("<QQQ", 10, 1, 2**40))
    with pytest.raises(wire.WireError, match="over the limit"):
        wire.Channel(read_fd, write_fd).recv(timeout=5)
    os.close(read_fd)
    os.close(write_fd)


def test_no_frame_in_time_is_a_timeout():
    read_fd, write_fd = os.pipe()
    with pytest.raises(wire.PeerTimeout):
        wire.Channel(read_fd, write_fd).recv(timeout=0.1)
    os.close(read_fd)
    os.close(write_fd)


# ------------------------------------------------------------------------------ a live sandbox
STUDENT = '''
import torch

def double(x):
    return 2 * x

def noisy(shape, generator):
    return torch.randn(shape, generator=generator, dtype=torch.float64)

def square_sum(x):
    return (x ** 2).sum()

def ascend(objective, start, steps=50, lr=0.1):
    params = start.clone().requires_grad_(True)
    optimiser = torch.optim.SGD([params], lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        (-objective(params)).backward()
        optimiser.step()
    return params.detach()

def calls_back(fn, x):
    print("calling back")
    return fn(x) + 1

def broken(x):
    return x.no_such_method()

def unfinished(x):
    raise NotImplementedError()

class Counter:
    def __init__(self, start):
        self.count = start
    def add(self, k):
        self.count += k
        return self.count

data = torch.linspace(0, 1, 5)
'''


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submission")
    (folder / "notes.txt").write_text("the student's own file\n")
    limits = sandbox.Limits(cell_seconds=60, wall_seconds=600)
    with Sandbox(folder, limits, ["mbrl_course.planning"], REPO) as session:
        text, reply = session.exec_cell(STUDENT, "cell student")
        assert "error" not in reply, reply
        yield session


def names(box, *wanted):
    found = box.lookup(list(wanted))
    return [found[name] for name in wanted]


def test_functions_are_called_across_and_data_comes_back(box):
    double, data = names(box, "double", "data")
    assert torch.equal(data, torch.linspace(0, 1, 5))
    assert torch.equal(double(torch.arange(3.0)), torch.tensor([0.0, 2.0, 4.0]))
    assert repr(double) == "<the student's function>"


def test_the_generator_state_comes_back(box):
    (noisy,) = names(box, "noisy")
    mine = torch.Generator().manual_seed(4)
    theirs = noisy((3,), mine)
    again = torch.Generator().manual_seed(4)
    assert torch.equal(theirs, torch.randn(3, generator=again, dtype=torch.float64))
    assert torch.equal(mine.get_state(), again.get_state())  # advanced exactly as a local call would


def test_gradients_flow_through_a_students_function(box):
    (square_sum,) = names(box, "square_sum")
    x = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    square_sum(x).backward()
    assert torch.allclose(x.grad, 2 * x.detach())


def test_a_students_optimiser_differentiates_a_function_of_the_grader(box):
    (ascend,) = names(box, "ascend")
    target = torch.tensor([0.5, -1.0], dtype=torch.float64)
    found = ascend(lambda p: -((p - target) ** 2).sum(), torch.zeros(2, dtype=torch.float64), steps=80)
    assert torch.allclose(found, target, atol=1e-4)


def test_callbacks_and_printed_text(box, capsys):
    (calls_back,) = names(box, "calls_back")
    box.sink = None
    seen = []
    assert calls_back(lambda x: seen.append(x) or x * 10, torch.tensor(2.0)) == 21
    assert torch.equal(seen[0], torch.tensor(2.0))


def test_the_students_errors_arrive_as_such(box):
    broken, unfinished = names(box, "broken", "unfinished")
    with pytest.raises(StudentError, match="no_such_method") as caught:
        broken(torch.zeros(1))
    assert caught.value.kind == "AttributeError" and "line" in caught.value.where
    with pytest.raises(NotImplementedError):
        unfinished(1)
    (calls_back,) = names(box, "calls_back")
    with pytest.raises(GradingError, match="wrong shape"):  # the grader's own error keeps its type
        calls_back(lambda x: (_ for _ in ()).throw(GradingError("wrong shape")), torch.zeros(1))


def test_objects_of_the_student_are_handles(box):
    (Counter,) = names(box, "Counter")
    counter = Counter(3)
    assert counter.add(4) == 7 and counter.count == 7
    with pytest.raises(AttributeError):
        counter.count = 0


def test_the_grader_exposes_only_calls(box):
    text, reply = box.exec_cell("def peek(fn):\n    return fn.__globals__\n", "cell peek")
    (peek,) = names(box, "peek")
    with pytest.raises(StudentError, match="__globals__"):
        peek(lambda: None)


@pytest.mark.parametrize(("code", "refused"), [
    ("import mbrl_course.planning", "importing mbrl_course.planning"),
    ("import mbrl_course, os\nopen(os.path.join(os.path.dirname(mbrl_course.__file__), 'planning', 'cem.py')).read()",
     "reading the reference"),
    (f"open({str(REPO / 'nbgrader_config.py')!r}).read()", "instructor"),
    ("import os\nos.system('rm -rf ~')", "starting another program"),
    ("import subprocess\nsubprocess.run(['ls'])", "starting another program"),
    ("import os\nos.fork()", "starting another program"),
    ("import socket\nsocket.create_connection(('127.0.0.1', 9))", "network"),
    ("open('/tmp/mbrl-sandbox-escape', 'w').write('x')", "writing outside"),
    ("import os\nos.kill(os.getpid() + 1, 9)", "signal"),
    ("import ctypes\nctypes.CDLL(None).system(b'true')", "ctypes"),
    ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "limits"),
    ("import gc\ngc.get_objects()", "garbage collector"),
])
def test_the_sandbox_refuses(box, code, refused):
    text, reply = box.exec_cell(code, "cell attack")
    error = reply.get("error") or {}
    assert error.get("type") == "PermissionError" and refused in error.get("message", ""), reply
    assert any(refused.split()[0] in event for event in box.events)
    assert not Path("/tmp/mbrl-sandbox-escape").exists()


def test_memory_past_the_limit_is_an_error_in_that_cell_only(box):
    text, reply = box.exec_cell("import torch\nhuge = torch.empty(10**11)", "cell hog")
    assert reply["error"]["kind"] == "memory"
    assert any("memory limit" in note for note in box.notes)
    text, reply = box.exec_cell("print('alive')", "cell after")
    assert text == "alive\n"


def test_the_student_can_write_in_its_own_folder(box):
    text, reply = box.exec_cell("print(open('notes.txt').read().strip())\nopen('mine.txt', 'w').write('ok')\n"
                                "print(open('mine.txt').read())", "cell files")
    assert "error" not in reply and text == "the student's own file\nok\n"


def test_an_endless_cell_is_interrupted_and_the_next_runs(box, monkeypatch):
    monkeypatch.setattr(box.limits, "cell_seconds", 3)
    text, reply = box.exec_cell("while True:\n    pass", "cell loop")
    assert reply["error"]["kind"] == "interrupted"
    assert any("cell loop" in note and "interrupted" in note for note in box.notes)
    assert box.exec_cell("print(1 + 1)", "cell next")[0] == "2\n"


@pytest.mark.skipif(LAYERS["landlock"] < 1, reason="no Landlock in this kernel: only the audit hook guards files")
def test_the_kernel_refuses_what_the_audit_hook_does_not_see(box):
    # torch opens the file in C++, below Python's audit events: only Landlock can stop it
    path = REPO / "mbrl_course" / "planning" / "cem.py"
    text, reply = box.exec_cell(f"import torch\ntorch.from_file({str(path)!r}, size=16, dtype=torch.uint8)",
                                "cell native read")
    assert "error" in reply, "a native read of the reference implementation got through"
    assert any("Landlock" in layer for layer in box.layers)


@pytest.mark.skipif(not LAYERS["namespaces"], reason="no unprivileged user namespaces here")
def test_there_is_no_network_interface_inside(box):
    assert any("network" in layer for layer in box.layers)


def test_an_endless_cell_is_interrupted_even_when_the_grader_ignores_sigint(tmp_path):
    # a grader run as `nohup ... &` ignores SIGINT, and its children inherit that; the kernel must not
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        limits = sandbox.Limits(cell_seconds=2, wall_seconds=120)
        with Sandbox(tmp_path, limits, [], REPO) as session:
            text, reply = session.exec_cell("while True:\n    pass", "cell loop")
            assert reply["error"]["kind"] == "interrupted"
            assert session.exec_cell("print(1 + 1)", "cell next")[0] == "2\n"
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_student_that_ignores_interrupts_is_stopped_and_later_cells_are_not_run(tmp_path):
    limits = sandbox.Limits(cell_seconds=2, wall_seconds=120)
    with Sandbox(tmp_path, limits, [], REPO) as session:
        code = "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass"
        with pytest.raises(remote.SandboxStopped, match="did not stop when interrupted"):
            session.exec_cell(code, "cell stubborn")
        with pytest.raises(remote.SandboxStopped):
            session.exec_cell("print(1)", "cell later")


def test_the_wall_time_limit_stops_the_submission(tmp_path):
    limits = sandbox.Limits(cell_seconds=60, wall_seconds=3)
    with Sandbox(tmp_path, limits, [], REPO) as session:
        with pytest.raises(remote.SandboxStopped, match="wall-time limit"):
            session.exec_cell("import time\ntime.sleep(30)", "cell slow")
        assert "wall-time limit" in session.stopped


def test_limits_are_checked():
    with pytest.raises(ValueError, match="memory_mb"):
        sandbox.Limits(memory_mb=0)


def test_preloaded_modules_may_use_ctypes_before_the_hook(tmp_path):
    preload = ["mbrl_course.envs", "mujoco", "gymnasium.envs.mujoco.half_cheetah_v5"]
    with Sandbox(tmp_path, sandbox.Limits(cell_seconds=60), ["mbrl_course.models"], REPO, preload=preload) as session:
        text, reply = session.exec_cell("import gymnasium as gym\nimport mbrl_course.envs\n"
                                        "print(gym.make('Pendulum-v1').reset(seed=0)[0].shape)\n"
                                        "print(gym.make('HalfCheetah-v5').reset(seed=0)[0].shape)", "cell envs")
        assert "error" not in reply and text == "(3,)\n(17,)\n", (text, reply)
        assert session.events == []  # nothing had to be refused


def test_a_preload_that_pulls_in_the_reference_refuses_to_start(tmp_path):
    # Landlock refuses to read the reference even to the preload; without it the worker refuses to go on
    with pytest.raises(RuntimeError, match="did not start") as caught:
        with Sandbox(tmp_path, sandbox.Limits(), ["mbrl_course.planning"], REPO, preload=["mbrl_course.agents"]):
            pass
    assert "mbrl_course/planning" in str(caught.value) or "mbrl_course.planning" in str(caught.value)


def test_without_the_kernel_layers_the_audit_hook_still_refuses(tmp_path):
    # what a machine without Landlock and user namespaces (macOS, old kernels) gets
    with Sandbox(tmp_path, sandbox.Limits(cell_seconds=60), ["mbrl_course.planning"], REPO,
                 namespaces=False, landlock=False) as session:
        assert session.layers[-1] == "audit hook" and not any("Landlock" in layer for layer in session.layers)
        for code, refused in [("import mbrl_course.planning", "importing"),
                              (f"open({str(REPO / 'nbgrader_config.py')!r}).read()", "instructor"),
                              ("import os\nos.system('true')", "starting another program"),
                              ("open('/tmp/mbrl-sandbox-escape', 'w')", "writing outside")]:
            error = session.exec_cell(code, "cell attack")[1].get("error") or {}
            assert refused in error.get("message", ""), (code, error)
