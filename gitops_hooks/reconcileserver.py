"""`gitops-hooks reconcile --every` serves pushes: between rounds, it runs post-receive's reconcile for the
hooks of its repository, with everything already imported and loaded.

A new `gitops-hooks post-receive` process pays about a second before its first request to the API server
(importing the Kubernetes client, loading the kubeconfig, reading the commit's files); the rounds process
has paid it once. So while it waits for the next round it listens on `<bare>/gitops-hooks/state/
reconcile.sock` (mode 0600; `reconcile.sock.lock` held while it serves, so one process per repository),
and the hooks' thin client (gateclient.served_post_receive) sends it the push's ref updates and the
hook's environment (who pushed, push options). It answers "accepted", runs exactly what
`gitops-hooks post-receive` runs before the chained hooks (postreceive.after_push: the configuration
read again, pending records, the environment's lock, notes) and streams the lines for the pusher back,
then "done"; the client runs the chained hooks itself.

Requests are served one at a time, between rounds: a push that arrives during a round waits for it to end
(at most gateclient.ROUNDS_ACCEPT_SECONDS, then it reconciles in its own process, where the lock and the
pending record make the two meet). Only a peer of the same user is served. When this process is not
running, is killed in the middle, or answers something else, the hook runs `gitops-hooks post-receive`
itself, which picks up the pending record the request left.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO, cast

from . import gateclient, postreceive
from .reconcile import audit, state
from .reconcile.commands import Emit

REQUEST_SECONDS = 10.0  # to receive a request
SEND_SECONDS = 60.0  # for the hook to take a line; after that the pusher counts as gone (the reconcile goes on)
SLICE_SECONDS = 0.5  # how soon a stop (SIGTERM) is seen while waiting


class _Stream(io.TextIOBase):
    """What post-receive writes for the pusher, sent to the hook as it comes. A pusher who went away does
    not stop the reconcile (the push is in; the record must be written)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.gone = False

    def write(self, text: str) -> int:
        if text and not self.gone:
            try:
                self.conn.sendall(gateclient.encode(["out", text]))
            except OSError:
                self.gone = True
        return len(text)

    def writable(self) -> bool:
        return True


@contextlib.contextmanager
def pushes_served(repo: Path, stop: threading.Event, emit: Emit) -> Iterator[tuple[Callable[[float], object], str]]:
    """For `reconcile_every`: a wait between rounds that serves the repository's pushes, and a note for the
    log; a plain wait when another process serves them or the socket cannot be made."""
    path = gateclient.rounds_socket(str(repo))
    state.state_dir(repo)  # (made if missing)
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        yield stop.wait, "; another process of this repository serves its pushes"
        return
    try:
        listener = _listen(path)
    except OSError as exc:
        os.close(lock)
        yield stop.wait, f"; pushes not served (cannot listen on {path}: {exc.strerror or exc})"
        return
    try:
        yield (lambda seconds: serve_for(listener, repo, seconds, stop, emit)), f"; serving its pushes ({path})"
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # ours: we hold the lock
        listener.close()
        os.close(lock)


def _listen(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a process that died: nobody holds the lock
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # 0600: only this user connects
    try:
        gateclient.unix_address(listener, path, bind=True)
    except OSError:
        listener.close()
        raise
    finally:
        os.umask(old_umask)
    listener.listen(16)
    return listener


def serve_for(listener: socket.socket, repo: Path, seconds: float, stop: threading.Event, emit: Emit) -> None:
    """Serve requests until `seconds` have passed or `stop` is set (a request in progress finishes)."""
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select([listener], [], [], min(left, SLICE_SECONDS))
        if not ready:
            continue
        try:
            conn, _ = listener.accept()
        except OSError:  # (out of descriptors, or the peer already gone): the hook reconciles by itself
            continue
        with conn:
            serve_one(conn, repo, emit)


def serve_one(conn: socket.socket, repo: Path, emit: Emit) -> None:
    """One post-receive request; never raises (an error leaves the hook to reconcile by itself)."""
    if gateclient.peer_uid(conn) != os.getuid():
        emit(f"{audit.now()} refused a connection from another user (uid {gateclient.peer_uid(conn)})")
        return
    conn.settimeout(REQUEST_SECONDS)  # a peer that connects and says nothing holds up no round
    try:
        fields = gateclient.receive(conn)
    except OSError:
        return
    if fields is None or len(fields) < 3 or fields[0] != "post-receive" or len(fields) % 2 == 0 \
            or not fields[2].isdigit():
        return
    pairs = fields[3:]
    env = dict(zip(pairs[::2], pairs[1::2], strict=True))
    try:
        conn.sendall(gateclient.encode(["accepted"]))  # fails when the hook gave up waiting: it reconciles itself
    except OSError:
        return
    conn.settimeout(SEND_SECONDS)
    started = time.monotonic()
    out = _Stream(conn)
    umask = os.umask(int(fields[2]) & 0o777)  # what the push writes (records, logs) is made as the hook would
    try:
        postreceive.after_push(fields[1], repo, env, cast(TextIO, out))
    except Exception as exc:  # noqa: BLE001 - the hook sees no "done" and reconciles by itself
        emit(f"{audit.now()} push not served: {type(exc).__name__}: {exc}".splitlines()[0][:300])
        return
    finally:
        os.umask(umask)
    with contextlib.suppress(OSError):
        conn.sendall(gateclient.encode(["done"]))
    refs = " ".join(line.split()[2] for line in fields[1].splitlines() if len(line.split()) == 3)
    emit(f"{audit.now()} push to {refs or '(no ref)'} served in {time.monotonic() - started:.2f} s"
         + ("; the pusher left before the end" if out.gone else ""))
