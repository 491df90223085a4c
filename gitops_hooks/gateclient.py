"""The hooks' thin client: pre-receive hands the push to a resident gate server (or runs the gate here);
post-receive answers by itself when the repository follows no environment.

A push waits on the hook, and a fresh Python process spends most of a small push importing the suite and
compiling validators. So the installed hook starts this file with `python -I -S` (standard library only,
no site: about 15 ms) and it asks a resident server (`gateserver.py`), which has all of that loaded, to
judge the push. The server runs exactly the code the command `gitops-hooks pre-receive` runs, with this
process's environment, working folder and standard input; it answers with the exit code and the text
for the pusher.

Nothing depends on the server being there. The gate runs in a process of its own, as
`gitops-hooks pre-receive`, when:
- there is no server for this code yet (one is started in the background for the next push);
- the server is busy with another push (pushes never queue behind each other);
- GITOPS_HOOKS_NO_SERVER=1 is set;
- the server fails to answer (it crashed or was killed): the push is judged again in-process, so a
  broken server never lets a push through and never refuses one on its own account.

post-receive costs next to nothing when no environment follows the pushed refs: `gitops-hooks` notes,
each time it loads the server configuration, whether it names environments and which refs they follow,
in `gitops-hooks/config.stamp` beside
`config.yaml`, keyed on that file's device, inode, size, modification and change times (taken before
reading it; not written while the file is younger than two seconds, whose times a same-size rewrite in
the same clock tick could repeat). When the key still matches, the installed hook script (with no
environment at all) or this client (with none for the pushed refs and no reconcile pending) prints what
`gitops-hooks post-receive` would print, without any server or suite process. Otherwise (an
environment to reconcile or a pending record, or a missing or stale stamp) it hands the push to the
repository's `gitops-hooks reconcile --every` process when one serves it (served_post_receive: the
socket `gitops-hooks/state/reconcile.sock`, reconcileserver.py), which reconciles with everything
loaded and streams the lines back; else, or when that process fails in the middle, it runs
`gitops-hooks post-receive` in a process of its own, which reconciles as before and streams its
progress to the pusher. The resident gate server is never held by a reconcile, so the next push's
pre-receive finds it free.

One server serves one installation (one Python environment, one user): its socket name carries a stamp
of the suite's code, the environment's installed packages and PYTHONPATH, so an upgrade or a new plugin
gets a new server and the old one exits on its own. The socket lives in a folder only this user can
enter.
"""

from __future__ import annotations

# Only built-in modules: `socket`, `json` and `hashlib` would cost more to import than the whole request.
import _socket
import os
import sys
import zlib

TYPE_CHECKING = False  # `typing` would cost more to import than the whole request
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import BinaryIO, TextIO

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
MAX_MESSAGE = 256 * 1024 * 1024
PREFIX = "gitops-hooks"
CONFIG_DIR, CONFIG_FILE, STAMP_FILE = "gitops-hooks", "config.yaml", "config.stamp"  # config.py: the same names
STAMP_MIN_AGE_NS = 2_000_000_000
STAMP_HEADER = "gitops-hooks config stamp 1"


def no_target(ref: str, new: str) -> str:
    """What post-receive says of an updated ref when the repository follows no environment."""
    return f"{PREFIX}: {ref} {new[:12]}: accepted, not applied: no target configured\n"


def no_environment(ref: str, new: str) -> str:
    """What post-receive says of an updated ref that no configured environment follows."""
    return f"{PREFIX}: {ref} {new[:12]}: accepted, not applied: no environment follows this ref\n"


def config_key(git_dir: str) -> str:
    """Identity of the server configuration file as it is now ("absent" when there is none)."""
    try:
        st = os.stat(os.path.join(git_dir, CONFIG_DIR, CONFIG_FILE))
    except FileNotFoundError:
        return "absent"
    except OSError:
        return ""  # cannot tell: no stamp matches
    # As `stat -c '%d:%i:%s:%.9Y:%.9Z'` prints it (the installed post-receive compares with that).
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{_seconds(st.st_mtime_ns)}:{_seconds(st.st_ctime_ns)}"


def _seconds(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def settled(key: str) -> bool:
    """Whether a configuration file with this key (config_key) is old enough that an edit of it would
    change its key (a file written within the same clock tick as an edit keeps its time on some file
    systems): only then may what was read from it be kept by its key."""
    import time

    if key == "absent":
        return True
    try:
        return bool(key) and time.time_ns() - int(key.split(":")[3].replace(".", "")) >= STAMP_MIN_AGE_NS
    except (IndexError, ValueError):
        return False


def write_stamp(git_dir: str, key: str, followed: list[str] | None) -> None:
    """Note whether the configuration whose key was taken (before it was read) names environments (None:
    it does not) and which refs they follow; nothing when the note is already there, the key is unknown
    or the file too young. Never raises."""
    folder = os.path.join(git_dir, CONFIG_DIR)
    what = "none\n" if followed is None else "environments\n" + "".join(f"{ref}\n" for ref in sorted(set(followed)))
    text = f"{STAMP_HEADER}\n{key}\n{what}"
    if not key or _read_stamp(folder) == text or not settled(key):
        return
    tmp = os.path.join(folder, f".{STAMP_FILE}.{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, os.path.join(folder, STAMP_FILE))
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


MANAGED = "gitops-hooks-managed"  # the marker line of the suite's own hook scripts (hooks/)
HOOK_PATH = "GITOPS_HOOKS_HOOK"  # the installed hook script's own path ($0), exported by the script
GITLAB_HOOKS = "custom_hooks"  # GitLab runs custom_hooks/<hook> and then custom_hooks/<hook>.d/* itself


def is_managed(path: str) -> bool:
    """Whether a file is one of the suite's hook scripts (the marker is on their second line)."""
    try:
        with open(path, "rb") as fh:
            return MANAGED.encode() in fh.read(4096)
    except OSError:
        return False


def chain_folder(hook: str, git_dir: str, env: Mapping[str, str]) -> str | None:
    """The folder of hooks this hook runs after its own work: `<hook>.d/` beside the hook script, where
    `install` keeps the hooks it found (so never the folder the hook lives in: Gitea's and Forgejo's
    `hooks/<hook>` runs every file of `hooks/<hook>.d/`, the gate among them). None when there is none or
    the platform runs it already: GitLab runs `custom_hooks/<hook>.d/*` after `custom_hooks/<hook>`. For
    a hook script that does not say where it is (one installed by an older version): `<git_dir>/hooks/
    <hook>.d`, unless it holds one of the suite's hook scripts: only `install --hooks-dir` writes one
    there, into a folder its platform runs."""
    own = env.get(HOOK_PATH, "")
    here = os.path.dirname(os.path.abspath(own)) if own else os.path.join(git_dir, "hooks")
    folder = os.path.join(here, hook + ".d")
    if not os.path.isdir(folder):
        return None
    if own and os.path.basename(here) == GITLAB_HOOKS:
        return None
    if not own and any(is_managed(p) for p in _executables(folder)):
        return None
    return folder


def _executables(folder: str) -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    paths = (os.path.join(folder, name) for name in names)
    return [p for p in paths if os.path.isfile(p) and os.access(p, os.X_OK)]


def chained_hooks(hook: str, git_dir: str, env: Mapping[str, str]) -> list[str]:
    """The hooks to run after this one, in name order: never one of the suite's own hook scripts."""
    folder = chain_folder(hook, git_dir, env)
    return [p for p in _executables(folder) if not is_managed(p)] if folder else []


def run_chained(hook: str, git_dir: str, stdin_text: str, env: Mapping[str, str], out: TextIO) -> int:
    """Run the chained hooks with the push's input, their output to `out`. pre-receive stops at the first
    that fails and returns its exit code (the push is refused); post-receive runs each, says which failed,
    and returns 0 (the push stands)."""
    paths = chained_hooks(hook, git_dir, env)
    if not paths:
        return 0
    import subprocess

    for path in paths:
        name = f"{hook}.d/{os.path.basename(path)}"
        try:
            proc = subprocess.run([path], input=stdin_text, text=True, capture_output=True, check=False)
        except OSError as exc:
            code, text = 126, f"cannot run it: {exc.strerror or exc}"
        else:
            code, text = proc.returncode, ""
            out.write(proc.stdout + proc.stderr)
        if code == 0:
            continue
        if hook == "pre-receive":
            out.write(f"{PREFIX}: {name} refused the push (exit {code}{'; ' + text if text else ''})\n")
            return code
        out.write(f"{PREFIX}: {name} failed (exit {code}{'; ' + text if text else ''}); the push stands\n")
    return 0


def _read_stamp(folder: str) -> str:
    try:
        with open(os.path.join(folder, STAMP_FILE), encoding="utf-8") as fh:
            return fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return ""


def post_receive_without_environments(git_dir: str, stdin_text: str) -> str | None:
    """What `gitops-hooks post-receive` would print, when the stamp shows that the configuration as it is
    now names no environment, or none that follows an updated ref while no reconcile is pending; None
    when it cannot tell (then the suite must run)."""
    folder = os.path.join(git_dir, CONFIG_DIR)
    head, key, what, *followed = _read_stamp(folder).split("\n")[:-1] or ["", "", ""]
    if head != STAMP_HEADER or key != config_key(git_dir) or what not in ("none", "environments"):
        return None
    if what == "environments" and _pending(folder):
        return None  # the suite picks up the reconcile left pending
    out = []
    for line in stdin_text.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            return None  # the suite says what is wrong with it
        _, new, ref = parts
        if not new.strip("0"):
            continue  # a deletion: nothing to say
        if what == "none":
            if not ref.startswith("refs/notes/"):  # notes are not desired state
                out.append(no_target(ref, new))
        elif ref in followed:
            return None  # an environment to reconcile
        else:
            out.append(no_environment(ref, new))
    return "".join(out)


def _pending(folder: str) -> bool:
    """Whether a reconcile is pending (reconcile/state.py: `state/<environment>.pending.json`)."""
    try:
        return any(name.endswith(".pending.json") for name in os.listdir(os.path.join(folder, "state")))
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell


def site_dir() -> str:
    """The environment's site-packages (worked out by hand: under `-S`, sys.prefix is not the venv's)."""
    prefix = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    if not os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        prefix = sys.prefix
    return os.path.join(prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}", "site-packages")


def code_stamp(pythonpath: str) -> str:
    """Names, sizes and times of the suite's modules, the installed packages' folder and PYTHONPATH."""
    parts = [sys.version, site_dir(), pythonpath]  # the environment, whichever of its pythons runs this
    try:
        parts.append(str(os.stat(site_dir()).st_mtime_ns))  # a package installed or removed
    except OSError:
        parts.append("-")
    for root, dirs, names in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                try:
                    st = os.stat(os.path.join(root, name))
                except OSError:
                    continue
                parts.append(f"{root}/{name}\0{st.st_size}\0{st.st_mtime_ns}")
    data = "\0".join(parts).encode("utf-8", "surrogateescape")
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"  # an identity, not a secret


def runtime_dir() -> str | None:
    """A folder only this user can enter, or None (then no server is used)."""
    uid = os.getuid()
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    path = os.path.join(base, "gitops-hooks") if base else os.path.join("/tmp", f"gitops-hooks-{uid}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        return None  # someone else's folder, or one others may write: do not trust it
    return path


def socket_path(env: dict[str, str] | None = None) -> str | None:
    folder = runtime_dir()
    if folder is None:
        return None
    stamp = code_stamp((env if env is not None else os.environ).get("PYTHONPATH", ""))
    return os.path.join(folder, f"gate-{stamp}.sock")


def settle() -> None:
    """Wait until the gate servers of this user's runtime folder have written what they write after an
    answer (the result cache): each holds `gate-<stamp>.sock.writing` locked until then. For whoever must
    see those rows right after a push: tests, the benchmark."""
    import fcntl

    folder = runtime_dir()
    if folder is None:
        return
    for name in os.listdir(folder):
        if not (name.startswith("gate-") and name.endswith(".sock.writing")):
            continue
        try:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)


def encode(fields: list[str]) -> bytes:
    """A message: a count, then each field as a length and UTF-8 bytes (surrogates kept)."""
    out = [len(fields).to_bytes(4, "big")]
    for f in fields:
        b = f.encode("utf-8", "surrogateescape")
        out.append(len(b).to_bytes(8, "big"))
        out.append(b)
    return b"".join(out)


def receive(sock: _socket.socket) -> list[str] | None:
    """One message, or None when the other side closed or sent something that is not one."""
    head = _exactly(sock, 4)
    if head is None:
        return None
    fields = []
    total = 0
    for _ in range(int.from_bytes(head, "big")):
        size_bytes = _exactly(sock, 8)
        if size_bytes is None:
            return None
        size = int.from_bytes(size_bytes, "big")
        total += size
        if total > MAX_MESSAGE:
            return None
        body = _exactly(sock, size)
        if body is None:
            return None
        fields.append(body.decode("utf-8", "surrogateescape"))
    return fields


def _exactly(sock: _socket.socket, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def start_server(path: str) -> None:
    """Start a server for the next push, detached from this one; never fails the push."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # not this push's repository
    try:
        subprocess.Popen(
            [sys.executable, "-m", "gitops_hooks.gateserver", path],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True, env=env, cwd="/",
        )
    except OSError:
        pass


def ensure_server() -> str:
    """Start this environment's server unless one answers already (after an install, so that the first
    push finds it warm). What happened, for the installer's log."""
    if os.environ.get("GITOPS_HOOKS_NO_SERVER") == "1":
        return "no gate server (GITOPS_HOOKS_NO_SERVER=1)"
    path = socket_path()
    if path is None:
        return "no gate server: no private runtime folder"
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
        return f"the gate server is running ({path})"
    except OSError:
        start_server(path)
        return f"started the gate server ({path})"
    finally:
        sock.close()


def in_process(exe: str, hook: str, stdin_text: str | None) -> int:
    """Run the hook as a process of its own (what the hook did before there was a server). When the suite
    cannot be started: one line, and exit 1 (pre-receive refuses: it fails closed)."""
    try:
        if stdin_text is None:
            os.execv(exe, [exe, hook])
        import subprocess

        return subprocess.run([exe, hook], input=stdin_text.encode("utf-8", "surrogateescape"),
                              check=False).returncode
    except OSError as exc:
        what = "push refused" if hook == "pre-receive" else "accepted, not applied"
        sys.stderr.write(f"{PREFIX}: {what}: cannot start {exe} ({exc.strerror or exc}); tell the administrator\n")
        return 1


def main(argv: list[str]) -> int:
    if argv[1:] == ["--socket-path"]:  # where this environment's server listens (for tests and admins)
        print(socket_path() or "")
        return 0
    exe, hook = argv[1], argv[2]
    if hook == "post-receive":
        return post_receive(exe)
    if os.environ.get("GITOPS_HOOKS_NO_SERVER") == "1":
        return in_process(exe, hook, None)
    path = socket_path()
    if path is None:
        return in_process(exe, hook, None)
    import fcntl

    try:
        busy = os.open(path + ".busy", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return in_process(exe, hook, None)
    try:
        fcntl.flock(busy, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(busy)
        return in_process(exe, hook, None)  # another push has the server: do not wait for it
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    sock.settimeout(_client_timeout())  # the server enforces the gate's own timeout; this only guards against a hang
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        os.close(busy)
        start_server(path)
        return in_process(exe, hook, None)
    stdin_text = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    env = [x for kv in os.environ.items() for x in kv]
    try:
        sock.sendall(encode([hook, os.getcwd(), stdin_text, str(_umask()), *env]))
        answer = receive(sock)
    except OSError:
        answer = None
    finally:
        sock.close()
        os.close(busy)
    if answer is None or len(answer) != 2 or not answer[0].isdigit():
        return in_process(exe, hook, stdin_text)  # the server failed: judge the push here
    if answer[1]:
        sys.stderr.buffer.write(answer[1].encode("utf-8", "surrogateescape"))
        sys.stderr.flush()
    return int(answer[0])


def post_receive(exe: str) -> int:
    """post-receive: the answer from the stamp when it can tell, then the chained hooks; else the
    reconcile by the repository's `reconcile --every` process (served_post_receive), then the chained
    hooks; else `gitops-hooks post-receive`."""
    stdin_text = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
    git_dir = os.environ.get("GIT_DIR", ".")
    try:
        text = post_receive_without_environments(git_dir, stdin_text)
    except Exception:  # noqa: BLE001 - whatever it was, the suite decides
        text = None
    if text is None:
        if not served_post_receive(git_dir, stdin_text, sys.stderr.buffer):
            return in_process(exe, "post-receive", stdin_text)  # which runs the chained hooks itself
    elif text:
        sys.stderr.buffer.write(text.encode("utf-8", "surrogateescape"))
        sys.stderr.flush()
    return run_chained("post-receive", git_dir, stdin_text, os.environ, sys.stderr)


# ---------------------------------------------------------------------------- post-receive served by rounds

ROUNDS_SOCKET = "reconcile.sock"  # in <git_dir>/gitops-hooks/state/ (reconcile/state.py: state_dir)
ROUNDS_ACCEPT_SECONDS = 10.0  # how long a push waits for a round in progress to end before reconciling itself
SERVED_GONE = f"{PREFIX}: the reconcile process stopped answering; reconciling in this hook instead\n"


def rounds_socket(git_dir: str) -> str:
    """Where `gitops-hooks reconcile --every` of this repository takes post-receive requests."""
    return os.path.join(git_dir, CONFIG_DIR, "state", ROUNDS_SOCKET)


def peer_uid(sock: _socket.socket) -> int | None:
    """The user id of the process at the other end of a Unix socket (SO_PEERCRED), None if unknown."""
    try:
        creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # struct ucred: pid, uid, gid
    except (OSError, AttributeError):
        return None
    return int.from_bytes(creds[4:8], sys.byteorder)


def unix_address(sock: _socket.socket, path: str, bind: bool = False) -> None:
    """Connect (or bind) `sock` to `path`, however long: a Unix socket's address holds 107 bytes, so a
    longer path is reached through a descriptor of its folder (/proc/self/fd/N/name)."""
    if len(path.encode("utf-8", "surrogateescape")) < 100:
        (sock.bind if bind else sock.connect)(path)
        return
    folder, name = os.path.split(path)
    fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        (sock.bind if bind else sock.connect)(f"/proc/self/fd/{fd}/{name}")
    finally:
        os.close(fd)


def served_post_receive(git_dir: str, stdin_text: str, out: BinaryIO) -> bool:
    """Have the repository's `reconcile --every` process run what `gitops-hooks post-receive` runs before
    the chained hooks (it streams the lines for the pusher to `out`). False when it did not finish: no
    such process, another user's socket, busy with a round for longer than ROUNDS_ACCEPT_SECONDS, gone
    or garbled in the middle; then the suite must run (it picks up the pending record left)."""
    path = rounds_socket(git_dir)
    if os.environ.get("GITOPS_HOOKS_NO_SERVER") == "1" or not os.path.exists(path):
        return False
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    accepted = False
    try:
        sock.settimeout(ROUNDS_ACCEPT_SECONDS)
        unix_address(sock, path)
        if peer_uid(sock) != os.getuid():
            return False  # not this user's process: it gets neither the push nor the environment
        sock.sendall(encode(["post-receive", stdin_text, str(_umask()), *(x for kv in os.environ.items() for x in kv)]))
        accepted = receive(sock) == ["accepted"]
        if not accepted:
            return False
        sock.settimeout(_client_timeout())
        while True:
            message = receive(sock)
            if message == ["done"]:
                return True
            if message is None or len(message) != 2 or message[0] != "out":
                break
            out.write(message[1].encode("utf-8", "surrogateescape"))
            out.flush()
    except OSError:  # (timeouts included)
        pass
    finally:
        sock.close()
    if accepted:
        out.write(SERVED_GONE.encode())
        out.flush()
    return False


def _umask() -> int:
    umask = os.umask(0o077)
    os.umask(umask)  # (read by setting it; put back at once)
    return umask


def _client_timeout() -> float:
    """How long a hook waits for the server's next word (GITOPS_HOOKS_CLIENT_TIMEOUT, 900 s by default)."""
    try:
        return float(os.environ.get("GITOPS_HOOKS_CLIENT_TIMEOUT", "900"))
    except ValueError:
        return 900.0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
