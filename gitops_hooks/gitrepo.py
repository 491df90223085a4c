"""Git side: ref updates from the hook's stdin, the repository as the hook sees it, trees as snapshots.

During pre-receive, git keeps the pushed objects in a quarantine directory (GIT_OBJECT_DIRECTORY) and
points GIT_ALTERNATE_OBJECT_DIRECTORIES at the real object store. libgit2 does not read those variables
unless asked, so we add the quarantine to the object database ourselves.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2

ZERO_OIDS = frozenset({"0" * 40, "0" * 64})

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000
MODE_GITLINK = 0o160000
MODE_TREE = 0o040000


@dataclass(frozen=True)
class RefUpdate:
    old: str
    new: str
    ref: str

    @property
    def is_create(self) -> bool:
        return self.old in ZERO_OIDS

    @property
    def is_delete(self) -> bool:
        return self.new in ZERO_OIDS

    @property
    def is_tag(self) -> bool:
        return self.ref.startswith("refs/tags/")

    def short(self) -> str:
        return self.new[:12]


class RefLineError(ValueError):
    pass


def parse_ref_updates(text: str) -> list[RefUpdate]:
    updates = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise RefLineError(f"line {number} of the hook's input is not 'old new ref': {line[:100]!r}")
        old, new, ref = parts
        for oid in (old, new):
            if len(oid) not in (40, 64) or any(c not in "0123456789abcdef" for c in oid):
                raise RefLineError(f"line {number}: {oid[:80]!r} is not an object id")
        updates.append(RefUpdate(old, new, ref))
    return updates


def git_dir_from_env(default: str = ".") -> Path:
    return Path(os.environ.get("GIT_DIR", default)).resolve()


def open_repository(git_dir: Path) -> pygit2.Repository:
    """Open the repository so that objects still in the push quarantine are visible."""
    repo = pygit2.Repository(str(git_dir))
    quarantine = os.environ.get("GIT_OBJECT_DIRECTORY")
    if quarantine:
        qpath = Path(quarantine)
        if not qpath.is_absolute():
            qpath = (Path.cwd() / qpath).resolve()
        repo.odb.add_disk_alternate(str(qpath))
    for alt in filter(None, os.environ.get("GIT_ALTERNATE_OBJECT_DIRECTORIES", "").split(os.pathsep)):
        apath = Path(alt)
        if not apath.is_absolute():
            apath = (Path.cwd() / apath).resolve()
        if apath.is_dir():
            repo.odb.add_disk_alternate(str(apath))
    return repo


def object_format(git_dir: Path) -> str:
    out = subprocess.run(
        ["git", "--git-dir", str(git_dir), "rev-parse", "--show-object-format"],
        capture_output=True, text=True, check=False,
    )
    return out.stdout.strip() or "sha1"


# ---------------------------------------------------------------------------- snapshots

@dataclass(frozen=True)
class Entry:
    """One path of a tree: a blob, an executable, a symlink or a submodule."""

    path: str
    mode: int
    oid: str
    size: int

    @property
    def is_link(self) -> bool:
        return self.mode == MODE_LINK

    @property
    def is_submodule(self) -> bool:
        return self.mode == MODE_GITLINK

    @property
    def is_executable(self) -> bool:
        return self.mode == MODE_EXEC


class Snapshot:
    """A set of files to check: a commit's tree, the index, or a folder on disk."""

    label: str = ""

    def entries(self) -> list[Entry]:
        raise NotImplementedError

    def read(self, entry: Entry) -> bytes:
        raise NotImplementedError

    def for_child(self) -> Snapshot:
        """The snapshot as a forked worker reads it (its own repository handle: libgit2's are not shared
        across a fork)."""
        return self


class GitTree(Snapshot):
    def __init__(self, repo: pygit2.Repository, commit_id: str, label: str = "") -> None:
        self.repo = repo
        self.commit_id = commit_id
        obj: Any = repo[commit_id]
        if isinstance(obj, pygit2.Tag):
            obj = obj.peel(pygit2.Commit)
        if not isinstance(obj, pygit2.Commit):
            raise ValueError(f"{commit_id[:12]} is not a commit")
        self.commit: pygit2.Commit = obj
        self.tree: pygit2.Tree = obj.tree
        self.label = label or commit_id[:12]
        self._entries: list[Entry] | None = None

    def entries(self) -> list[Entry]:
        if self._entries is None:
            self._entries = list(_walk_tree(self.repo, self.tree, ""))
        return self._entries

    def read(self, entry: Entry) -> bytes:
        return _blob_bytes(self.repo, entry.oid)

    def for_child(self) -> Snapshot:
        return _reopened(self)


def _reopened(snapshot: GitTree | IndexTree) -> Snapshot:
    other = copy.copy(snapshot)
    other.repo = open_repository(Path(snapshot.repo.path))
    return other


def _blob_bytes(repo: pygit2.Repository, oid: str) -> bytes:
    kind, data = repo.odb.read(oid)  # no Blob object, no id-prefix lookup: half the time of repo[oid]
    if kind != pygit2.enums.ObjectType.BLOB:
        raise ValueError(f"{oid[:12]} is not a blob")
    return bytes(data)


# Listings of trees already walked, by tree id and path: a tree id names its whole content, sizes
# included, so in a long-lived process (the gate server) a push re-reads only the trees it changed.
_LISTINGS: dict[tuple[str, str], list[Entry]] = {}
_LISTINGS_LIMIT = 200_000  # entries kept, all trees together (about 30 MB)
_listed = 0


def _walk_tree(repo: pygit2.Repository, tree: pygit2.Tree, prefix: str) -> list[Entry]:
    global _listed
    key = (str(tree.id), prefix)
    known = _LISTINGS.get(key)
    if known is not None:
        return known
    out: list[Entry] = []
    odb = repo.odb
    for item in tree:
        path = prefix + (item.name or "")
        mode = int(item.filemode)
        if mode == MODE_TREE:
            listed = _LISTINGS.get((str(item.id), path + "/"))  # (known: the subtree is not even looked up)
            out.extend(listed if listed is not None else _walk_tree(repo, repo[item.id], path + "/"))  # type: ignore[arg-type]
        elif mode == MODE_GITLINK:
            out.append(Entry(path, mode, str(item.id), 0))
        else:
            _, size = odb.read_header(item.id)
            out.append(Entry(path, mode, str(item.id), size))
    if _listed + len(out) > _LISTINGS_LIMIT:
        _LISTINGS.clear()
        _listed = 0
    _LISTINGS[key] = out
    _listed += len(out)
    return out


class IndexTree(Snapshot):
    """What the next commit will hold: the index of a working clone."""

    def __init__(self, repo: pygit2.Repository) -> None:
        self.repo = repo
        self.label = "staged changes"

    def entries(self) -> list[Entry]:
        out = []
        odb = self.repo.odb
        for item in self.repo.index:
            size = 0 if item.mode == MODE_GITLINK else odb.read_header(item.id)[1]
            out.append(Entry(item.path, item.mode, str(item.id), size))
        return out

    def read(self, entry: Entry) -> bytes:
        return _blob_bytes(self.repo, entry.oid)

    def for_child(self) -> Snapshot:
        return _reopened(self)


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FolderTree(Snapshot):
    """Files on disk, with ids computed as git would, so the result cache serves them too."""

    SKIP_DIRS = frozenset({".git", "node_modules", ".venv", "__pycache__"})

    def __init__(self, root: Path, paths: list[Path] | None = None) -> None:
        self.root = root.resolve()
        self.paths = paths
        self.label = str(root)
        self._data: dict[str, bytes] = {}

    def _files(self) -> Iterator[tuple[Path, str | None]]:
        """Each file, with its path relative to the root when the walk knows it without resolving: below a
        target folder that is its own real path and lies in the root, every folder os.walk enters is real
        (it does not enter linked folders). Otherwise None: `relative` works it out."""
        prefix = str(self.root).rstrip("/") + "/"  # ("/" itself as the root ends in one already)
        targets = self.paths or [self.root]
        for target in targets:
            if target.is_symlink() or target.is_file():
                yield target, None
            elif target.is_dir():
                top = str(target)
                known = top == str(target.resolve()) and (top.rstrip("/") + "/").startswith(prefix)
                for dirpath, dirnames, filenames in os.walk(target):
                    dirnames[:] = sorted(d for d in dirnames if d not in self.SKIP_DIRS)
                    for name in sorted(filenames):
                        full = os.path.join(dirpath, name)
                        yield Path(full), full[len(prefix):] if known else None

    def relative(self, p: Path) -> str | None:
        """The path of a file (a link: of the link itself) relative to the root; None if outside."""
        try:
            return (p.parent.resolve() / p.name).relative_to(self.root).as_posix()
        except ValueError:
            return None

    def entries(self) -> list[Entry]:
        out = []
        for p, known in self._files():
            rel = known or self.relative(p) or p.as_posix()
            if p.is_symlink():
                target = os.readlink(p).encode()
                out.append(Entry(rel, MODE_LINK, blob_id(target), len(target)))
                continue
            data = p.read_bytes()
            self._data[rel] = data
            mode = MODE_EXEC if os.access(p, os.X_OK) else MODE_FILE
            out.append(Entry(rel, mode, blob_id(data), len(data)))
        return out

    def read(self, entry: Entry) -> bytes:
        return self._data[entry.path]


def new_commits(repo: pygit2.Repository, new: str) -> list[str]:
    """Commits reachable from `new` that no existing ref reaches: what this push adds to history."""
    walker = repo.walk(new, pygit2.enums.SortMode.TOPOLOGICAL)
    for ref in repo.references:
        try:
            target = repo.references[ref].peel(pygit2.Commit).id
        except (pygit2.InvalidSpecError, ValueError, KeyError, pygit2.GitError):
            continue
        walker.hide(target)
    return [str(c.id) for c in walker]
