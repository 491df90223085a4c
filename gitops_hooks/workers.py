"""Forked worker processes that hold state between the steps of one run, talking to the parent over pipes.

`multiprocessing.Pool` hands each task to whichever worker is free, so a worker cannot keep what it built
for a later task (a file it parsed). These workers are forked copies of the caller (copy-on-write: they
inherit everything read so far), each with a pipe each way; the caller sends a message to a chosen worker
and reads its answer. Messages are pickled, length-prefixed. A worker that fails sends the failure as its
answer and exits; `close()` kills them all, so none outlives the run, not even on a timeout (it reaps
those that have finished exiting, `reap()` the others later).
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import struct
import traceback
from collections.abc import Callable
from typing import Any

_HEADER = struct.Struct("!Q")


class WorkerError(Exception):
    """A worker died, failed or answered nonsense: the caller does the work itself."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise WorkerError("a worker ended without answering")
        got += k
    return bytes(buf)


def send(fd: int, message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    _write_all(fd, _HEADER.pack(len(data)) + data)


def receive(fd: int) -> Any:
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    return pickle.loads(_read_exactly(fd, size))


class Channel:
    """A worker's end: `receive()` the parent's next message, `send()` an answer."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd = rfd
        self.wfd = wfd

    def receive(self) -> Any:
        return receive(self.rfd)

    def send(self, message: Any) -> None:
        send(self.wfd, message)


_FAILED = "gitops-hooks worker failed"

# Workers that close() killed and that had not finished exiting: the kernel takes milliseconds to free a
# large process, and a push need not wait for it. `reap()` waits for them later.
_UNREAPED: list[int] = []


def reap() -> None:
    """Wait for the workers that close() killed (the gate server calls it after sending its answer; the
    next Workers too, so that a long-lived process does not collect zombies)."""
    while _UNREAPED:
        pid = _UNREAPED.pop()
        try:
            os.waitpid(pid, 0)
        except OSError:
            pass


def child_init() -> None:
    """Workers die with the hook, even when it is killed (they would keep git waiting on their output),
    and of SIGTERM: not of a handler the parent installed (the gate server's lets a push finish first)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the gate's timer is the parent's; a stray one kills
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Workers:
    """`count` forked workers, each running `body(channel)` and exiting when it returns."""

    def __init__(self, count: int, body: Callable[[Channel], None]) -> None:
        reap()
        self.pids: list[int] = []
        self.to_child: list[int] = []
        self.from_child: list[int] = []
        parent = os.getpid()
        # The gate's timer (SIGALRM) must not fire between a fork and the bookkeeping of its child. It may
        # fire while we wait for answers.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        # Objects that exist now are left out of the workers' garbage collections: a full collection
        # touches every object, and each touched page of the parent's heap is copied into the worker.
        gc.freeze()
        try:
            for _ in range(count):
                down_r, down_w = os.pipe()
                up_r, up_w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(down_w)
                    os.close(up_r)
                    for fd in (*self.to_child, *self.from_child):
                        os.close(fd)
                    _run_child(parent, body, Channel(down_r, up_w))
                os.close(down_r)
                os.close(up_w)
                self.pids.append(pid)
                self.to_child.append(down_w)
                self.from_child.append(up_r)
        except BaseException:
            self.close()
            raise
        finally:
            gc.unfreeze()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def send(self, index: int, message: Any) -> None:
        try:
            send(self.to_child[index], message)
        except OSError as exc:  # the worker is gone (EPIPE)
            raise WorkerError(f"worker {index}: {exc}") from exc

    def receive(self, index: int) -> Any:
        try:
            answer = receive(self.from_child[index])
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            raise WorkerError(f"worker {index}: {exc}") from exc
        if isinstance(answer, tuple) and len(answer) == 2 and answer[0] == _FAILED:
            raise WorkerError(f"worker {index} failed: {answer[1]}")
        return answer

    def close(self) -> None:
        for fd in (*self.to_child, *self.from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.to_child, self.from_child = [], []
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == 0:
                    _UNREAPED.append(pid)  # dead (SIGKILL), but still exiting: see reap()
            except OSError:
                pass
        self.pids = []


def _run_child(parent: int, body: Callable[[Channel], None], channel: Channel) -> None:
    """The whole life of a worker; never returns into the caller's code (os._exit, no cleanup handlers:
    the parent's database handles and buffered output are the parent's)."""
    code = 0
    try:
        child_init()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        if os.getppid() != parent:  # the parent died before PR_SET_PDEATHSIG was set
            os._exit(1)
        body(channel)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which does the work itself
        code = 1
        try:
            text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            channel.send((_FAILED, text[:2000]))
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(code)


class Queue:
    """Indexes 0..n-1 handed out one at a time to whichever process asks next (the caller and its forked
    workers): a counter in shared memory, guarded by a POSIX record lock (held per process, unlike
    flock, so it excludes forked copies that share the descriptor). Made before the fork."""

    def __init__(self, n: int) -> None:
        import mmap

        self.n = n
        try:
            self.fd = os.memfd_create("gitops-hooks-queue", os.MFD_CLOEXEC)
        except (AttributeError, OSError):  # not Linux (a client's validate): an unlinked temporary file
            import tempfile

            self.fd, name = tempfile.mkstemp(prefix="gitops-hooks-queue-")
            os.unlink(name)
        os.ftruncate(self.fd, 8)
        self.counter = mmap.mmap(self.fd, 8)

    def take(self) -> int | None:
        """The next index, or None when all have been taken."""
        import fcntl

        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            i = int.from_bytes(self.counter[:8], "little")
            if i >= self.n:
                return None
            self.counter[:8] = (i + 1).to_bytes(8, "little")
            return i
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd >= 0:
            self.counter.close()
            os.close(self.fd)
            self.fd = -1
