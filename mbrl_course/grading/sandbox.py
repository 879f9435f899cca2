"""The walls around one student's notebook while it is graded, from the operating system.

The worker process (:mod:`mbrl_course.grading.worker`) that runs a submission calls
:func:`enter` first thing, before it imports torch or any of the student's code, and
:func:`install_audit_hook` once its own imports are done. The layers, strongest first:

1. **Resource limits** (``setrlimit``, every POSIX system): address space (memory), CPU time,
   the size of any file written, no core dumps, and (where the grader is not root) the number
   of processes. The grader adds the wall-time limit: it kills the worker's process group.
2. **Namespaces** (Linux with unprivileged user namespaces): a new user, network and PID
   namespace. No network interface exists inside; the worker is PID 1 of its namespace and
   dies with its parent, so nothing it starts outlives it.
3. **Landlock** (Linux ≥ 5.13): the kernel refuses to open any file outside an allow-list
   (system libraries, Python, the installed package minus the assignment's reference modules)
   and to write anywhere but the sandbox folder; from ABI 4 also every TCP bind/connect, from
   ABI 6 signals to processes outside the sandbox.
4. **An audit hook** (``sys.addaudithook``, every system; it cannot be removed from Python):
   refuses imports of the reference modules, opening their files, writing outside the sandbox
   folder, starting processes (``os.system``, ``subprocess``, ``fork``, ``exec``), sockets,
   ``ctypes``, signals to other processes, raising limits and walking the garbage collector.
   Python's own documentation says audit hooks are not a sandbox: on systems without layers
   2 and 3 a student who knows CPython's internals may get around it (see the instructor guide).

Every refusal raises ``PermissionError("sandbox: ...")`` in the student's code and is recorded as
an *event* that the grader reports in the grades CSV.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

try:
    import resource
except ImportError:  # Windows: no POSIX limits (grade on Linux; see the instructor guide)
    resource = None


# ------------------------------------------------------------------------------ configuration
@dataclass
class Limits:
    """What one submission may use while it is graded (defaults: ``nbgrader_config.py`` can change them)."""

    memory_mb: int = 4096
    """Address space of the student's process, MiB (``RLIMIT_AS``)."""
    wall_seconds: float = 600.0
    """Wall time for the whole submission, s: past it the process is killed and later cells score 0."""
    cell_seconds: float = 120.0
    """Wall time for one cell or one call from a test, s: past it the code is interrupted."""
    cpu_seconds: int | None = None
    """CPU time, s (``RLIMIT_CPU``); ``None``: twice the wall time (torch may use two cores)."""
    file_mb: int = 256
    """Largest file the student's code may write, MiB (``RLIMIT_FSIZE``)."""
    processes: int = 512
    """``RLIMIT_NPROC`` where the grader is not root (threads count too)."""

    def __post_init__(self) -> None:
        for name in ("memory_mb", "wall_seconds", "cell_seconds", "file_mb", "processes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}: expected a positive number, got {value!r}")

    @property
    def cpu(self) -> int:
        return int(self.cpu_seconds if self.cpu_seconds is not None else 2 * self.wall_seconds + 30)

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------ events
_events: list[str] = []


def record(event: str) -> None:
    """Remember something the sandbox refused (sent to the grader with the next message)."""
    if len(_events) < 200:
        _events.append(event[:300])


def drain_events() -> list[str]:
    events = list(_events)
    _events.clear()
    return events


# ------------------------------------------------------------------------------ layer 1: rlimits
def _set_limit(which: int, value: int) -> bool:
    """Lower a limit to ``value`` (never above its hard limit); False where the system refuses
    (macOS, for one, does not enforce an address-space limit)."""
    try:
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        return False
    return True


def apply_rlimits(limits: Limits) -> list[str]:
    """Set the resource limits; returns those that hold, e.g. ``["memory 4096 MiB", ...]``."""
    if resource is None:
        return []
    wanted = [(resource.RLIMIT_AS, int(limits.memory_mb) * 2**20, f"memory {limits.memory_mb} MiB"),
              (resource.RLIMIT_CPU, limits.cpu, f"CPU {limits.cpu} s"),
              (resource.RLIMIT_FSIZE, int(limits.file_mb) * 2**20, f"files {limits.file_mb} MiB"),
              (resource.RLIMIT_CORE, 0, "no core files")]
    if os.geteuid() != 0 and hasattr(resource, "RLIMIT_NPROC"):  # root is exempt from it anyway
        wanted.append((resource.RLIMIT_NPROC, int(limits.processes), f"processes {limits.processes}"))
    return [name for which, value, name in wanted if _set_limit(which, value)]


# ------------------------------------------------------------------------------ layer 2: namespaces
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def enter_namespaces() -> bool:
    """New user, network and PID namespaces; returns in the child, PID 1 of the new namespace.

    The calling process becomes a small supervisor that waits for the child and exits with its
    status. Returns False (and changes nothing) where namespaces are not available.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID) != 0:
        return False
    try:  # keep our own ids inside (otherwise we would be "nobody")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    except OSError:
        pass
    child = os.fork()
    if child == 0:  # PID 1 of the new namespace (its parent, outside, shows as PID 0)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        return True
    # the supervisor: signals meant for the worker reach it through the process group
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in range(3, 256):
        try:
            os.close(fd)
        except OSError:
            pass
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


# ------------------------------------------------------------------------------ layer 3: Landlock
_SYS_CREATE, _SYS_ADD_RULE, _SYS_RESTRICT = 444, 445, 446
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_ALL_V1 = (1 << 13) - 1
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_ALL = (1 << 0) | (1 << 1)
_SCOPE_ALL = (1 << 0) | (1 << 1)
_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = _libc()
        libc.syscall.restype = ctypes.c_long
        version = libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, AttributeError):
        return 0
    return max(0, int(version))


def enter_landlock(read_paths: list[str], file_paths: list[str], list_paths: list[str], write_paths: list[str]) -> int:
    """Allow reading ``read_paths`` (hierarchies) and ``file_paths`` (single files or hierarchies),
    listing ``list_paths``, everything in ``write_paths``; refuse all else. Returns the ABI used (0: none)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = _libc()
    handled = _FS_ALL_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0) \
        | (_FS_IOCTL_DEV if abi >= 5 else 0)
    attr = _RulesetAttr(handled, _NET_ALL if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0)
    size = 8 if abi < 4 else (16 if abi < 6 else 24)
    ruleset = libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return 0
    try:
        def allow(path: str, access: int) -> None:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                return
            try:
                if not os.path.isdir(path):
                    access &= _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
                rule = _PathBeneath(access & handled, fd)
                libc.syscall(_SYS_ADD_RULE, ruleset, 1, ctypes.byref(rule), ctypes.c_uint32(0))
            finally:
                os.close(fd)

        for path in read_paths + file_paths:
            allow(path, _READ)
        for path in list_paths:
            allow(path, _FS_READ_DIR)
        for path in write_paths:
            allow(path, handled)
        for device in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"):
            allow(device, _FS_READ_FILE | _FS_WRITE_FILE)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return 0
        if libc.syscall(_SYS_RESTRICT, ruleset, ctypes.c_uint32(0)) != 0:
            return 0
    finally:
        os.close(ruleset)
    return abi


SYSTEM_READ = ["/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys",
               "/dev/shm", "/nix", "/System", "/Library"]
"""System folders the student's process may read (those that exist)."""


def within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (both already resolved)."""
    return path == folder or folder in path.parents


def allowed_reads(package_dir: Path, blocked_paths: list[Path], course_root: Path | None) -> tuple[list[str], list[str], list[str]]:
    """(hierarchies to read, single files/folders to read, folders to list) for Landlock.

    Python, its libraries and the system are readable; so is ``package_dir`` except the
    ``blocked_paths`` (the assignment's reference modules); nothing else of ``course_root``
    (solutions, hidden checks, other students' submissions, the gradebook) is.
    """
    course = course_root.resolve() if course_root is not None else None
    reads = [p for p in SYSTEM_READ if os.path.exists(p) and (course is None or not within(course, Path(p)))]
    for entry in {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
                  *sys.path}:
        if not entry or not os.path.isdir(entry):
            continue
        path = Path(entry).resolve()
        if course is not None and (within(course, path) or within(path, course)):
            continue  # the course folder or one that holds it: handled below
        reads.append(str(path))
    if course is not None:
        for name in (".venv", "venv", ".device"):  # a virtual environment inside the course folder
            if (course / name).is_dir():
                reads.append(str(course / name))
    files: list[str] = []
    blocked = [p.resolve() for p in blocked_paths]

    def walk(folder: Path) -> None:
        for child in sorted(folder.iterdir()):
            resolved = child.resolve()
            if any(within(b, resolved) and b != resolved for b in blocked):
                walk(child)
            elif not any(within(resolved, b) for b in blocked):
                files.append(str(child))

    package = package_dir.resolve()
    walk(package)
    return reads, files, [str(package), str(package.parent)]


# ------------------------------------------------------------------------------ layer 4: audit hook
_PROCESS_EVENTS = {"os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                   "os.forkpty", "pty.spawn", "os.startfile"}
_PATH_EVENTS = {"os.remove", "os.rmdir", "os.rename", "os.link", "os.symlink", "os.truncate", "os.chmod",
                "os.chown", "os.mkdir", "os.utime", "os.chflags", "os.lchflags", "os.setxattr", "os.removexattr",
                "shutil.rmtree", "shutil.move", "shutil.copyfile", "shutil.copytree", "shutil.chown",
                "shutil.copymode", "shutil.copystat"}
_DENIED = {"resource.setrlimit": "raising its limits", "resource.prlimit": "changing limits",
           "gc.get_objects": "walking the garbage collector", "gc.get_referrers": "walking the garbage collector",
           "gc.get_referents": "walking the garbage collector", "sys.remote_exec": "remote execution",
           "os.setuid": "changing user", "webbrowser.open": "opening a browser"}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def install_audit_hook(blocked_modules: list[str], blocked_paths: list[str], write_root: str,
                       private_paths: list[str]) -> None:
    """Refuse, in this process and for good, what a graded notebook must not do (see the module doc).

    ``blocked_modules``: the reference implementation (``mbrl_course.planning`` ...), refused by
    import and by path (``blocked_paths``); ``write_root``: the only folder written to;
    ``private_paths``: folders that must not be read (the course's solutions, submissions, gradebook).
    """
    modules = tuple(blocked_modules)
    hidden = tuple(os.path.realpath(p) for p in blocked_paths) + tuple(os.path.realpath(p) for p in private_paths)
    root = os.path.realpath(write_root)
    own_pid, own_group = os.getpid(), os.getpgrp()
    realpath, sep, fsdecode = os.path.realpath, os.sep, os.fsdecode
    path_types = (str, bytes)

    def inside(path: str, folder: str) -> bool:
        return path == folder or path.startswith(folder + sep)

    def deny(what: str, detail: str = ""):
        record(f"{what}{': ' + detail if detail else ''}")
        raise PermissionError(f"sandbox: {what} is not allowed while grading{': ' + detail if detail else ''}")

    def as_path(value):
        if isinstance(value, path_types):
            return realpath(fsdecode(value))
        if type(value).__module__ == "pathlib" and type(value).__name__ in ("PosixPath", "WindowsPath"):
            return realpath(str(value))
        return None  # a file descriptor or an object we will not call into

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path = as_path(args[0])
            if path is None:
                return
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            if any(inside(path, h) for h in hidden):
                deny("reading the reference implementation or the instructor's files", path)
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing and not inside(path, root) and path not in ("/dev/null",):
                deny("writing outside the submission folder", path)
        elif event == "import":
            name = args[0] if args else ""
            if isinstance(name, str) and any(name == m or name.startswith(m + ".") for m in modules):
                deny(f"importing {name} (the reference implementation of this assignment)")
            if name in ("_posixsubprocess", "_ctypes"):
                deny(f"importing {name}")
        elif event in _PROCESS_EVENTS:
            deny("starting another program or process", event)
        elif event.startswith("socket."):
            deny("network access", event)
        elif event.startswith("ctypes."):
            deny("ctypes (calling C directly)", event)
        elif event == "os.kill" and args and args[0] not in (own_pid, 0):
            deny("sending a signal to another process", f"{event}{args}")
        elif event == "os.killpg" and args and args[0] not in (own_group, 0):
            deny("sending a signal to another process", f"{event}{args}")
        elif event in _PATH_EVENTS:
            for value in args:
                path = as_path(value)
                if path is not None and not inside(path, root):
                    deny("changing files outside the submission folder", f"{event} {path}")
        elif event in _DENIED:
            deny(_DENIED[event], event)

    sys.addaudithook(hook)
    # subprocess's C helper forks without an audit event of its own: take it away for good
    helper = sys.modules.get("_posixsubprocess")
    if helper is not None and hasattr(helper, "fork_exec"):
        del helper.fork_exec


def layers_available() -> dict[str, object]:
    """What this machine offers: ``{"landlock": ABI or 0, "namespaces": bool}`` (probed in a child)."""
    import subprocess

    probe = ("import ctypes,sys;libc=ctypes.CDLL(None,use_errno=True);"
             f"sys.exit(0 if libc.unshare({CLONE_NEWUSER | CLONE_NEWNET}) == 0 else 1)")
    try:
        namespaces = subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        namespaces = False
    return {"landlock": landlock_abi(), "namespaces": namespaces and sys.platform.startswith("linux")}
