"""What the webhook service's tests share: the real payloads signed as GitHub signs them, a plain bare
remote (as on a hosted platform: no hooks), and `gitops-hooks serve` run as a real subprocess."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml
from conftest import SHARED, git

WEBHOOKS = SHARED / "webhooks"
REPO = "Codertocat/Hello-World"  # the repository the real GitHub payloads name
SECRET = "It's a Secret to Everybody"  # GitHub's documented example secret


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WEBHOOKS / name).read_text(encoding="utf-8"))
    return data


def pull_request(head: str, base: str, action: str = "opened", number: int = 2, fork: bool = False) -> dict[str, Any]:
    """GitHub's documented pull_request example, its commits replaced by real ones of the test's remote."""
    data = copy.deepcopy(payload("github-pull_request-synchronize.json" if action == "synchronize"
                                 else "github-pull_request-opened.json"))
    data["action"], data["number"] = action, number
    pr = data["pull_request"]
    pr["number"], pr["head"]["sha"], pr["base"]["sha"] = number, head, base
    if fork:
        pr["head"]["repo"] = {**pr["head"]["repo"], "id": 4242, "full_name": "mallory/Hello-World", "fork": True}
    return data


def push(ref: str, before: str, after: str) -> dict[str, Any]:
    data = copy.deepcopy(payload("github-push.json"))
    data.update(ref=ref, before=before, after=after, deleted=False, created=before == "0" * 40)
    return data


def github_headers(event: str, body: bytes, secret: str = SECRET, delivery: str = "") -> dict[str, str]:
    sig = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/044aadd", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "X-GitHub-Hook-ID": "292430182",
            "X-Hub-Signature-256": f"sha256={sig}"}


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=2).encode()


class Remote:
    """A plain bare repository standing for the hosted one (`file://` clone URL), with a working clone."""

    def __init__(self, root: Path, branch: str = "master") -> None:
        self.path = root / "remote.git"
        self.work = root / "work"
        self.branch = branch
        git("init", "--quiet", "--bare", f"--initial-branch={branch}", str(self.path))
        git("init", "--quiet", f"--initial-branch={branch}", str(self.work))
        git("config", "user.name", "Codertocat", cwd=self.work)
        git("config", "user.email", "codertocat@example.com", cwd=self.work)

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def write(self, rel: str, text: str) -> None:
        p = self.work / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")

    def commit(self, message: str = "change") -> str:
        git("add", "-A", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work).stdout.strip()

    def push(self, ref: str) -> None:
        git("push", "--quiet", "--force", str(self.path), f"HEAD:{ref}", cwd=self.work)

    def checkout(self, branch: str, start: str = "") -> None:
        git("checkout", "--quiet", "-B", branch, *([start] if start else []), cwd=self.work)

    def rev(self, ref: str) -> str | None:
        proc = git("--git-dir", str(self.path), "rev-parse", "--verify", "--quiet", ref, check=False)
        return proc.stdout.strip() or None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_key() -> tuple[str, str]:
    """A fresh RSA key pair for a test GitHub App: (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def write_config(root: Path, remote_url: str, api_url: str, *, token: str = "", app: tuple[int, str, int] | None = None,
                 policy: dict[str, Any] | None = None, extra_repos: list[dict[str, Any]] | None = None,
                 plans: dict[str, Any] | None = None) -> Path:
    (root / "secret").write_text(f"  {SECRET}\n", encoding="utf-8")  # surrounding whitespace is stripped
    entry: dict[str, Any] = {"platform": "github", "repository": REPO, "clone_url": remote_url, "api_url": api_url,
                             "webhook_secret_file": "secret", **(policy or {})}
    if token:
        (root / "token").write_text(token + "\n", encoding="utf-8")
        entry["token_file"] = "token"
    if app:
        (root / "app.pem").write_text(app[1], encoding="utf-8")
        entry.update(app_id=app[0], private_key_file="app.pem", installation_id=app[2])
    if plans is not None:
        entry["plans"] = plans
    data = {"listen": f"127.0.0.1:{free_port()}", "state_dir": "state", "repositories": [entry, *(extra_repos or [])]}
    path = root / "serve.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


class Service:
    """`gitops-hooks serve --config FILE` as a real process in its own process group."""

    def __init__(self, config: Path) -> None:
        self.config = config
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        self.url = f"http://{data['listen']}"
        self.log = config.parent / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        exe = Path(sys.executable).parent / "gitops-hooks"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([str(exe), "serve", "--config", str(self.config)], stdout=out, stderr=out,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("serve did not come up:\n" + self.log.read_text(errors="replace"))

    def deliver(self, event: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
        sent = headers if headers is not None else github_headers(event, body)
        req = urllib.request.Request(self.url + "/webhook", data=body, method="POST", headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        """SIGKILL to the whole process group, as a crash or a container OOM kill (the workers too)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


class GitHttp:
    """`git http-backend` (smart HTTP) on loopback, serving bare repositories under `root`, and only to
    requests whose Authorization header is `auth`, as a hosted platform's git server does."""

    def __init__(self, root: Path, auth: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.seen: list[str] = []  # the Authorization headers received

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.cgi()

            def do_POST(self) -> None:
                self.cgi()

            def cgi(self) -> None:
                given = self.headers.get("Authorization", "")
                outer.seen.append(given)
                if given != auth:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = {"GIT_PROJECT_ROOT": str(root), "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path,
                       "QUERY_STRING": query, "REQUEST_METHOD": self.command, "REMOTE_USER": "bot",
                       "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
                       "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""), "PATH": os.environ["PATH"]}
                out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True,
                                     check=False).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode().split("\r\n"):
                    name, _, value = line.partition(": ")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
