"""A small in-memory Hugging Face Hub for tests: the subset of the Hub HTTP API the real clients use.

Standard library only. It speaks what ``huggingface_hub`` 2.4 and ``datasets`` 5.2 send (see
``shared/docs/hub-protocol.md``): repo create/info/delete, refs, tree (paginated), paths-info, commits,
validate-yaml, preupload, git-LFS batch (basic transfer) + PUT + verify, ndjson commits (``parentCommit`` →
412), branches, tags (409 if the tag exists), resolve with ``ETag``/``X-Repo-Commit``/ranges, private repos
(401/404 + ``X-Error-Code: RepoNotFound``) and unknown tokens (401).

Tests can make it fail on purpose (:meth:`HubServer.inject`) and read what it was asked (:attr:`HubServer.log`,
:meth:`HubServer.count`)::

    with HubServer(tokens={"hf_x": "alice"}) as hub:
        hub.inject("lfs_put", status=500, times=2)   # the next two LFS uploads answer 500
        hub.inject("commit", reset=True)              # the next commit drops the connection
        ...
        hub.count("lfs_put", status=200)               # uploads that were stored
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

__all__ = [
    "OTHER_USER",
    "TEST_ORG",
    "TEST_USER",
    "Blob",
    "Commit",
    "Fault",
    "HubServer",
    "Repo",
    "RequestRecord",
]

#: The identities the ``hub_server`` fixture sets up: TEST_USER (HF_TOKEN) is a member of TEST_ORG;
#: OTHER_USER has a valid token but no rights on their repositories.
TEST_USER = "llava-tester"
TEST_ORG = "llava-org"
OTHER_USER = "someone-else"

REPO_TYPES = {"datasets": "dataset", "models": "model", "spaces": "space"}
URL_PREFIX = {"dataset": "datasets/", "model": "", "space": "spaces/"}
REGULAR_MAX_SIZE = 10 * 1024 * 1024
_LFS_PATTERNS = (
    "*.7z *.arrow *.avi *.bin *.bz2 *.gz *.h5 *.jpeg *.jpg *.mkv *.mp4 *.npy *.npz *.parquet *.pkl *.png *.pt "
    "*.safetensors *.tar *.wav *.webm *.zip *.zst"
).split()
DEFAULT_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in _LFS_PATTERNS)
ROUTES_WITHOUT_AUTH = {"lfs_put"}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class Blob:
    """One file's content in a commit. ``lfs`` files are addressed by sha256, others by git sha1."""

    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        """The git object id of what git stores: the pointer file for LFS files."""
        return git_blob_sha1(lfs_pointer(self.sha256, self.size) if self.lfs else self.data)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else git_blob_sha1(self.data)

    @property
    def upload_oid(self) -> str:
        """What preupload returns as ``oid``: sha256 for LFS, git sha1 for regular files."""
        return self.sha256 if self.lfs else git_blob_sha1(self.data)


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, Blob]
    title: str
    message: str
    date: str
    author: str


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    prs: dict[int, str] = field(default_factory=dict)
    lfs_objects: dict[str, bytes] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/")[0]

    def resolve(self, rev: str) -> str | None:
        """A branch, tag, refs/heads|tags|pr/x, full or unique short sha → commit sha."""
        if rev.startswith("refs/heads/"):
            return self.branches.get(rev[len("refs/heads/") :])
        if rev.startswith("refs/tags/"):
            return self.tags.get(rev[len("refs/tags/") :])
        if rev.startswith("refs/pr/"):
            num = rev[len("refs/pr/") :]
            return self.prs.get(int(num)) if num.isdigit() else None
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        if re.fullmatch(r"[0-9a-f]{4,40}", rev):
            found = [sha for sha in self.commits if sha.startswith(rev)]
            if len(found) == 1:
                return found[0]
        return None

    def writable_ref(self, rev: str) -> tuple[str, str | int] | None:
        """A revision a commit may land on: ("branch", name) or ("pr", n)."""
        if rev.startswith("refs/heads/"):
            rev = rev[len("refs/heads/") :]
        if rev.startswith("refs/pr/") and rev[len("refs/pr/") :].isdigit():
            num = int(rev[len("refs/pr/") :])
            return ("pr", num) if num in self.prs else None
        if rev in self.branches:
            return ("branch", rev)
        return None

    def head_of(self, ref: tuple[str, str | int]) -> str:
        kind, name = ref
        return self.branches[str(name)] if kind == "branch" else self.prs[int(name)]

    def set_head(self, ref: tuple[str, str | int], sha: str) -> None:
        kind, name = ref
        if kind == "branch":
            self.branches[str(name)] = sha
        else:
            self.prs[int(name)] = sha


@dataclass
class Fault:
    """Make the next ``times`` requests of ``route`` fail, after letting ``after`` of them through.

    ``status``: answer with this HTTP status. ``reset``: drop the connection without an answer.
    ``apply_first`` (commit only): apply the commit, then fail (the answer is lost on the way back).
    ``headers``: extra response headers (``Retry-After`` on a 429).
    """

    route: str
    status: int | None = 500
    reset: bool = False
    times: int = 1
    after: int = 0
    apply_first: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    route: str
    path: str
    status: int
    authorized: bool


class _HubError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}


class _Reset(Exception):
    """Drop the connection without answering."""


class HubServer:
    """An in-memory Hub on 127.0.0.1; ``tokens`` maps a token to a user name, ``orgs`` a user to its orgs."""

    def __init__(
        self,
        tokens: dict[str, str] | None = None,
        orgs: dict[str, list[str]] | None = None,
        *,
        page_size: int = 1000,
        read_only_tokens: set[str] | None = None,
    ) -> None:
        self.tokens = dict(tokens or {})
        self.orgs = dict(orgs or {})
        self.read_only_tokens = set(read_only_tokens or ())
        self.page_size = page_size
        self.repos: dict[tuple[str, str], Repo] = {}
        self.log: list[RequestRecord] = []
        self.faults: list[Fault] = []
        self.hooks: list[tuple[str, Callable[[HubServer], None]]] = []
        self.lock = threading.RLock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> HubServer:
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``, without a trailing slash (as HF_ENDPOINT must be)."""
        return f"http://127.0.0.1:{self.port}"

    # ----------------------------------------------------------------- test helpers
    def inject(
        self,
        route: str,
        *,
        status: int | None = 500,
        reset: bool = False,
        times: int = 1,
        after: int = 0,
        apply_first: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """Queue a fault for ``route`` (names as in :attr:`log`: "commit", "lfs_put", "preupload", ...)."""
        fault = Fault(
            route,
            status=None if reset else status,
            reset=reset,
            times=times,
            after=after,
            apply_first=apply_first,
            headers=dict(headers or {}),
        )
        with self.lock:
            self.faults.append(fault)
        return fault

    def on_next(self, route: str, callback: Callable[[HubServer], None]) -> None:
        """Run ``callback(server)`` once, when the next ``route`` request arrives (before it is handled)."""
        with self.lock:
            self.hooks.append((route, callback))

    def commit_direct(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        title: str = "someone else's push",
        repo_type: str = "dataset",
    ) -> str:
        """Commit ``files`` on ``branch`` as another client would (a concurrent push); returns the sha."""
        with self.lock:
            repo = self.repo(repo_id, repo_type)
            head = repo.branches[branch]
            merged = dict(repo.commits[head].files)
            patterns = _lfs_patterns(merged)
            for path, data in files.items():
                merged[path] = Blob(data, lfs=_is_lfs(path, len(data), data[:512], patterns))
            commit = self.new_commit(repo, head, merged, title, "", "someone-else")
            repo.branches[branch] = commit.sha
            return commit.sha

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def count(self, route: str, *, status: int | None = None, method: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for r in self.log
                if r.route == route
                and (status is None or r.status == status)
                and (method is None or r.method == method)
            )

    def token_for(self, user: str) -> str:
        """A token the server accepts for ``user``."""
        return next(token for token, name in self.tokens.items() if name == user)

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def files_at(self, repo_id: str, rev: str = "main", repo_type: str = "dataset") -> dict[str, bytes]:
        repo = self.repo(repo_id, repo_type)
        sha = repo.resolve(rev)
        if sha is None:
            raise KeyError(rev)
        return {path: blob.data for path, blob in repo.commits[sha].files.items()}

    def _run_hooks(self, route: str) -> None:
        with self.lock:
            due = [hook for hook in self.hooks if hook[0] == route]
            for hook in due:
                self.hooks.remove(hook)
        for _, callback in due:
            callback(self)

    def _take_fault(self, route: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.route != route:
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    # ----------------------------------------------------------------- repo model
    def new_commit(
        self, repo: Repo, parent: str | None, files: dict[str, Blob], title: str, message: str, author: str
    ) -> Commit:
        seed = f"{parent}|{title}|{uuid.uuid4().hex}|{time.time_ns()}".encode()
        sha = hashlib.sha1(seed).hexdigest()
        commit = Commit(sha, parent, files, title, message, _now(), author)
        repo.commits[sha] = commit
        return commit

    def create_repo_obj(self, repo_id: str, repo_type: str, private: bool, author: str) -> Repo:
        repo = Repo(repo_id, repo_type, private, _now())
        first = self.new_commit(
            repo,
            None,
            {".gitattributes": Blob(DEFAULT_GITATTRIBUTES.encode(), lfs=False)},
            "initial commit",
            "",
            author,
        )
        repo.branches["main"] = first.sha
        self.repos[(repo_type, repo_id)] = repo
        return repo


def _lfs_patterns(files: dict[str, Blob]) -> list[str]:
    attrs = files.get(".gitattributes")
    if attrs is None:
        return []
    patterns = []
    for line in attrs.data.decode("utf-8", "replace").splitlines():
        parts = line.split()
        if len(parts) > 1 and "filter=lfs" in parts[1:]:
            patterns.append(parts[0])
    return patterns


def _is_lfs(path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    for pattern in patterns:
        if ("/" in pattern and fnmatch.fnmatch(path, pattern.lstrip("/"))) or fnmatch.fnmatch(name, pattern):
            return True
    if size > REGULAR_MAX_SIZE or b"\0" in sample:
        return True
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the 512-byte sample is still text
        try:
            sample[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return True
    return False


def _split_rev(segments: list[str]) -> tuple[str, list[str]]:
    """The revision is one quoted segment, or an unquoted ``refs/{heads,tags,pr,convert}/x``."""
    if len(segments) >= 3 and segments[0] == "refs" and segments[1] in {"heads", "tags", "pr", "convert"}:
        return "/".join(segments[:3]), segments[3:]
    return segments[0], segments[1:]


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    server_version = "LlavaHFTestHub/1.0"

    # -------------------------------------------------------------- plumbing
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        self.body = self._read_body()
        url = urlsplit(self.path)
        self.query = parse_qs(url.query, keep_blank_values=True)
        self.raw_query = url.query
        segments = [unquote(s) for s in url.path.split("/")[1:]]
        self.route = "unknown"
        self.user: str | None = None
        self.token: str | None = None
        authorized = False
        reset = False
        try:
            handler, args = self._match(method, segments)
            if self.route not in ROUTES_WITHOUT_AUTH:
                self.user = self._authenticate()
                authorized = self.user is not None
            self.hub._run_hooks(self.route)
            fault = self.hub._take_fault(self.route)
            if fault is not None and not fault.apply_first:
                self._fail(fault)
            status, headers, body = handler(*args)
            if fault is not None:
                self._fail(fault)
        except _Reset:
            status, headers, body, reset = 0, {}, b"", True
        except _HubError as err:
            status = err.status
            headers = {"Content-Type": "application/json", "X-Error-Message": err.message, **err.headers}
            if err.code:
                headers["X-Error-Code"] = err.code
            body = json.dumps({"error": err.message}).encode()
        except Exception as err:  # a server bug: answer 500 with the reason, keep serving
            status, headers = 500, {"Content-Type": "application/json"}
            body = json.dumps({"error": repr(err)}).encode()
        # log before answering, so a test that got the answer also sees the record
        with self.hub.lock:
            self.hub.log.append(RequestRecord(method, self.route, self.path, status, authorized))
        if reset:
            self._reset()
        else:
            self._send(status, headers, body, method)

    def _fail(self, fault: Fault) -> None:
        if fault.reset:
            raise _Reset()
        raise _HubError(
            fault.status or 500, f"Injected failure ({fault.status}) on {self.route}", None, fault.headers
        )

    def _reset(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _send(self, status: int, headers: dict[str, str], body: bytes, method: str) -> None:
        self.send_response(status)
        headers = dict(headers)
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if method != "HEAD" and body:
            self.wfile.write(body)

    @staticmethod
    def _json(
        obj: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()

    def _authenticate(self) -> str | None:
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else auth
        user = self.hub.tokens.get(token)
        if user is None:
            raise _HubError(401, "Invalid credentials in Authorization header")
        self.token = token
        return user

    # -------------------------------------------------------------- routing
    def _match(self, method: str, seg: list[str]) -> tuple[Any, tuple[Any, ...]]:
        if seg and seg[0] == "api":
            return self._match_api(method, seg[1:])
        if seg and seg[0] == "_lfs" and len(seg) >= 5:
            repo_key = (REPO_TYPES.get(seg[1], ""), f"{seg[2]}/{seg[3]}")
            if method == "PUT" and len(seg) == 5:
                self.route = "lfs_put"
                return self.lfs_put, (repo_key, seg[4])
            if method == "POST" and len(seg) == 6 and seg[5] == "verify":
                self.route = "lfs_verify"
                return self.lfs_verify, (repo_key, seg[4])
        # files: /{datasets/|spaces/|}ns/name/resolve/rev/path ; LFS: /{datasets/|}ns/name.git/info/lfs/objects/batch
        repo_type = "model"
        rest = seg
        if seg and seg[0] in {"datasets", "spaces"}:
            repo_type, rest = REPO_TYPES[seg[0]], seg[1:]
        if len(rest) >= 6 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            self.route = "lfs_batch"
            return self.lfs_batch, (repo_type, f"{rest[0]}/{rest[1][:-4]}")
        if len(rest) >= 5 and rest[2] == "resolve" and method in {"GET", "HEAD"}:
            rev, path = _split_rev(rest[3:])
            self.route = "resolve"
            return self.resolve, (repo_type, f"{rest[0]}/{rest[1]}", rev, "/".join(path), method)
        raise _HubError(404, f"no route for {method} {self.path}")

    def _match_api(self, method: str, seg: list[str]) -> tuple[Any, tuple[Any, ...]]:
        simple = {
            ("POST", "repos/create"): ("create_repo", self.create_repo),
            ("DELETE", "repos/delete"): ("delete_repo", self.delete_repo),
            ("POST", "validate-yaml"): ("validate_yaml", self.validate_yaml),
            ("GET", "whoami-v2"): ("whoami", self.whoami),
            ("GET", "agent-harnesses"): ("agent_harnesses", self.agent_harnesses),
        }
        key = (method, "/".join(seg))
        if key in simple:
            self.route, fn = simple[key]
            return fn, ()
        if len(seg) < 3 or seg[0] not in REPO_TYPES:
            raise _HubError(404, f"no route for {method} {self.path}")
        repo_type, repo_id, rest = REPO_TYPES[seg[0]], f"{seg[1]}/{seg[2]}", seg[3:]
        if not rest and method == "GET":
            self.route = "repo_info"
            return self.repo_info, (repo_type, repo_id, "main")
        if not rest:
            raise _HubError(405, f"{method} not allowed on {self.path}")
        action, args = rest[0], rest[1:]
        table: dict[tuple[str, str], tuple[str, Any]] = {
            ("GET", "revision"): ("repo_info", self.repo_info),
            ("GET", "refs"): ("refs", self.refs),
            ("GET", "tree"): ("tree", self.tree),
            ("POST", "paths-info"): ("paths_info", self.paths_info),
            ("GET", "commits"): ("commits", self.commits),
            ("POST", "preupload"): ("preupload", self.preupload),
            ("POST", "commit"): ("commit", self.commit),
            ("POST", "branch"): ("branch", self.create_branch),
            ("DELETE", "branch"): ("delete_branch", self.delete_branch),
            ("POST", "tag"): ("tag", self.create_tag),
            ("DELETE", "tag"): ("delete_tag", self.delete_tag),
        }
        if (method, action) not in table:
            if action.startswith("xet-"):
                self.route = "xet"
                raise _HubError(501, "Xet is not supported by the test server: set HF_HUB_DISABLE_XET=1")
            raise _HubError(404, f"no route for {method} {self.path}")
        self.route, fn = table[(method, action)]
        if action == "refs":
            return fn, (repo_type, repo_id)
        if not args:
            if action in {"tree", "commits", "preupload", "commit", "paths-info", "revision"}:
                args = ["main"]
            else:
                raise _HubError(400, f"missing revision in {self.path}")
        rev, sub = _split_rev(args)
        return fn, (repo_type, repo_id, rev, "/".join(sub))

    # -------------------------------------------------------------- access control
    def _repo(self, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        visible = repo is not None and (not repo.private or self._owns(repo.namespace))
        if not visible:
            if self.user is None:
                raise _HubError(401, "Repository not found", "RepoNotFound")
            raise _HubError(404, "Repository not found", "RepoNotFound")
        assert repo is not None
        if write:
            if self.user is None:
                raise _HubError(401, "You must be authenticated to write to this repository")
            if not self._owns(repo.namespace) or self.token in self.hub.read_only_tokens:
                raise _HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _owns(self, namespace: str) -> bool:
        return self.user is not None and (
            namespace == self.user or namespace in self.hub.orgs.get(self.user, [])
        )

    def _resolve(self, repo: Repo, rev: str) -> Commit:
        sha = repo.resolve(rev)
        if sha is None:
            raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return repo.commits[sha]

    def _base(self) -> str:
        return self.hub.endpoint

    def _repo_url(self, repo: Repo) -> str:
        return f"{self._base()}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}"

    # -------------------------------------------------------------- simple endpoints
    def whoami(self) -> tuple[int, dict[str, str], bytes]:
        if self.user is None:
            raise _HubError(401, "Invalid credentials in Authorization header")
        return self._json(
            {
                "type": "user",
                "name": self.user,
                "orgs": [{"name": o} for o in self.hub.orgs.get(self.user, [])],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            }
        )

    def agent_harnesses(self) -> tuple[int, dict[str, str], bytes]:
        return self._json({"standardEnvVars": [], "harnesses": {}})

    def validate_yaml(self) -> tuple[int, dict[str, str], bytes]:
        try:
            payload = json.loads(self.body or b"{}")
        except ValueError:
            return self._json({"errors": [{"message": "body is not JSON"}], "warnings": []}, 400)
        content = payload.get("content", "")
        if content.startswith("---") and content.count("\n---") < 1:
            return self._json(
                {"errors": [{"message": "YAML metadata block is not closed"}], "warnings": []}, 400
            )
        return self._json({"errors": [], "warnings": []})

    def create_repo(self) -> tuple[int, dict[str, str], bytes]:
        payload = json.loads(self.body or b"{}")
        name = payload.get("name")
        namespace = payload.get("organization") or self.user
        repo_type = payload.get("type") or "model"
        if self.user is None:
            raise _HubError(401, "You must be authenticated to create a repository")
        if not name or namespace is None:
            raise _HubError(400, "name is required")
        if not self._owns(namespace) or self.token in self.hub.read_only_tokens:
            raise _HubError(
                403, f"You don't have the rights to create a {repo_type} under the namespace {namespace}"
            )
        repo_id = f"{namespace}/{name}"
        url = f"{self._base()}/{URL_PREFIX[repo_type]}{repo_id}"
        with self.hub.lock:
            if (repo_type, repo_id) in self.hub.repos:
                return self._json({"error": "You already created this repo", "url": url}, 409)
            self.hub.create_repo_obj(
                repo_id,
                repo_type,
                payload.get("visibility") == "private" or bool(payload.get("private")),
                self.user,
            )
        return self._json({"url": url, "name": repo_id})

    def delete_repo(self) -> tuple[int, dict[str, str], bytes]:
        payload = json.loads(self.body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.user}/{payload.get('name')}"
        with self.hub.lock:
            self._repo(repo_type, repo_id, write=True)
            del self.hub.repos[(repo_type, repo_id)]
        return self._json({})

    # -------------------------------------------------------------- reads
    def repo_info(
        self, repo_type: str, repo_id: str, rev: str, _sub: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._resolve(repo, rev)
            blobs = self.query.get("blobs", ["false"])[0] == "true"
            siblings = []
            for path, blob in sorted(commit.files.items()):
                entry: dict[str, Any] = {"rfilename": path}
                if blobs:
                    entry.update(size=blob.size, blobId=blob.oid)
                    if blob.lfs:
                        entry["lfs"] = {
                            "size": blob.size,
                            "sha256": blob.sha256,
                            "pointerSize": len(lfs_pointer(blob.sha256, blob.size)),
                        }
                siblings.append(entry)
            info = {
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "author": repo.namespace,
                "sha": commit.sha,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
                "createdAt": repo.created_at,
                "lastModified": commit.date,
            }
        return self._json(info)

    def refs(self, repo_type: str, repo_id: str) -> tuple[int, dict[str, str], bytes]:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            out: dict[str, Any] = {
                "branches": [
                    {"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.branches.items()
                ],
                "tags": [
                    {"name": n, "ref": f"refs/tags/{n}", "targetCommit": s} for n, s in repo.tags.items()
                ],
                "converts": [],
            }
            if self.query.get("include_prs", ["0"])[0] in {"1", "true"}:
                out["pullRequests"] = [
                    {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": s}
                    for n, s in repo.prs.items()
                ]
        return self._json(out)

    def _entry(self, commit: Commit, path: str, *, expand: bool) -> dict[str, Any]:
        blob = commit.files.get(path)
        if blob is not None:
            entry: dict[str, Any] = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
            if blob.lfs:
                entry["lfs"] = {
                    "oid": blob.sha256,
                    "size": blob.size,
                    "pointerSize": len(lfs_pointer(blob.sha256, blob.size)),
                }
        else:
            inside = sorted((p, b.oid) for p, b in commit.files.items() if p.startswith(path + "/"))
            entry = {
                "type": "directory",
                "oid": hashlib.sha1(repr(inside).encode()).hexdigest(),
                "size": 0,
                "path": path,
            }
        if expand:
            entry["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date}
            if blob is not None:
                entry["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False},
                    "pickleImportScan": None,
                }
        return entry

    @staticmethod
    def _dirs(commit: Commit) -> set[str]:
        dirs = set()
        for path in commit.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return dirs

    def _page(self, items: list[Any], route_path: str) -> tuple[int, dict[str, str], bytes]:
        expand = self.query.get("expand", ["false"])[0] == "true"
        size = min(self.hub.page_size, 50) if expand else self.hub.page_size
        cursor = int(self.query.get("cursor", ["0"])[0] or 0)
        page = items[cursor : cursor + size]
        headers = {}
        if cursor + size < len(items):
            query = {k: v for k, v in self.query.items() if k != "cursor"}
            query["cursor"] = [str(cursor + size)]
            headers["Link"] = f'<{self._base()}{route_path}?{urlencode(query, doseq=True)}>; rel="next"'
        return self._json(page, headers=headers)

    def tree(self, repo_type: str, repo_id: str, rev: str, sub: str) -> tuple[int, dict[str, str], bytes]:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._resolve(repo, rev)
            sub = sub.strip("/")
            dirs = self._dirs(commit)
            if sub and sub not in dirs:
                raise _HubError(
                    404,
                    f"{sub} does not exist (or is not a folder) on {rev}",
                    "EntryNotFound",
                    {"X-Repo-Commit": commit.sha},
                )
            recursive = self.query.get("recursive", ["false"])[0] == "true"
            expand = self.query.get("expand", ["false"])[0] == "true"
            prefix = f"{sub}/" if sub else ""
            paths = [p for p in sorted(set(commit.files) | dirs) if p.startswith(prefix)]
            if not recursive:
                paths = [p for p in paths if "/" not in p[len(prefix) :]]
            entries = [self._entry(commit, p, expand=expand) for p in paths]
        path = urlsplit(self.path).path
        return self._page(entries, path)

    def paths_info(
        self, repo_type: str, repo_id: str, rev: str, _sub: str
    ) -> tuple[int, dict[str, str], bytes]:
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            form = json.loads(self.body or b"{}")
            paths = form.get("paths", [])
            expand = bool(form.get("expand"))
        else:
            parsed = parse_qs(self.body.decode(), keep_blank_values=True)
            paths = parsed.get("paths", [])
            expand = parsed.get("expand", ["false"])[0] in {"true", "True", "1"}
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._resolve(repo, rev)
            dirs = self._dirs(commit)
            entries = [
                self._entry(commit, p.strip("/"), expand=expand)
                for p in paths
                if p.strip("/") in commit.files or p.strip("/") in dirs
            ]
        return self._json(entries)

    def commits(self, repo_type: str, repo_id: str, rev: str, _sub: str) -> tuple[int, dict[str, str], bytes]:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            commit: Commit | None = self._resolve(repo, rev)
            items = []
            while commit is not None:
                items.append(
                    {
                        "id": commit.sha,
                        "title": commit.title,
                        "message": commit.message,
                        "date": commit.date,
                        "authors": [{"user": commit.author}],
                    }
                )
                commit = repo.commits.get(commit.parent) if commit.parent else None
        return self._page(items, urlsplit(self.path).path)

    def resolve(
        self, repo_type: str, repo_id: str, rev: str, path: str, method: str
    ) -> tuple[int, dict[str, str], bytes]:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._resolve(repo, rev)
            blob = commit.files.get(path)
        if blob is None:
            raise _HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{blob.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        data = blob.data
        rng = self.headers.get("Range")
        if rng and method == "GET":
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not match:
                raise _HubError(416, f"bad range {rng}", headers={"Content-Range": f"bytes */{len(data)}"})
            start_s, end_s = match.groups()
            if start_s == "":
                start, end = max(0, len(data) - int(end_s)), len(data) - 1
            else:
                start, end = int(start_s), min(int(end_s) if end_s else len(data) - 1, len(data) - 1)
            if start >= len(data) or start > end:
                raise _HubError(
                    416, "range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return 206, headers, data[start : end + 1]
        if method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return 200, headers, b""
        return 200, headers, data

    # -------------------------------------------------------------- writes
    def preupload(
        self, repo_type: str, repo_id: str, rev: str, _sub: str
    ) -> tuple[int, dict[str, str], bytes]:
        payload = json.loads(self.body or b"{}")
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            ref = repo.writable_ref(rev)
            if ref is None:
                raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            files = repo.commits[repo.head_of(ref)].files
        patterns = _lfs_patterns(files)
        out = []
        for item in payload.get("files", []):
            sample = base64.b64decode(item.get("sample", ""))
            path = item["path"]
            entry: dict[str, Any] = {
                "path": path,
                "uploadMode": "lfs"
                if _is_lfs(path, int(item.get("size", 0)), sample, patterns)
                else "regular",
                "shouldIgnore": False,
            }
            if path in files:
                entry["oid"] = files[path].upload_oid
            out.append(entry)
        return self._json({"files": out, "commitOid": None})

    def lfs_batch(self, repo_type: str, repo_id: str) -> tuple[int, dict[str, str], bytes]:
        payload = json.loads(self.body or b"{}")
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=payload.get("operation") == "upload")
            stored = dict(repo.lfs_objects)
        objects = []
        base = f"{self._base()}/_lfs/{quote(repo_type + 's')}/{repo_id}"
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if payload.get("operation") == "download":
                if oid not in stored:
                    entry["error"] = {"code": 404, "message": "Object does not exist"}
                else:
                    entry["actions"] = {"download": {"href": f"{base}/{oid}"}}
            elif oid not in stored:
                entry["actions"] = {
                    "upload": {"href": f"{base}/{oid}"},
                    "verify": {"href": f"{base}/{oid}/verify"},
                }
            objects.append(entry)
        return (
            200,
            {"Content-Type": "application/vnd.git-lfs+json"},
            json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
        )

    def lfs_put(self, repo_key: tuple[str, str], oid: str) -> tuple[int, dict[str, str], bytes]:
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise _HubError(400, f"content does not match oid {oid}")
        with self.hub.lock:
            repo = self.hub.repos.get(repo_key)
            if repo is None:
                raise _HubError(404, "Repository not found", "RepoNotFound")
            repo.lfs_objects[oid] = bytes(self.body)
        return 200, {"ETag": f'"{oid}"'}, b""

    def lfs_verify(self, repo_key: tuple[str, str], oid: str) -> tuple[int, dict[str, str], bytes]:
        payload = json.loads(self.body or b"{}")
        with self.hub.lock:
            repo = self._repo(*repo_key, write=True)
            data = repo.lfs_objects.get(oid)
        if data is None or len(data) != int(payload.get("size", -1)):
            raise _HubError(404, f"LFS object {oid} was not uploaded")
        return self._json({"success": True})

    def commit(self, repo_type: str, repo_id: str, rev: str, _sub: str) -> tuple[int, dict[str, str], bytes]:
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "the first ndjson line must be the header")
        header = lines[0]["value"]
        create_pr = self.query.get("create_pr", ["0"])[0] in {"1", "true"}
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            ref = repo.writable_ref(rev)
            if ref is None:
                raise _HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            head = repo.head_of(ref)
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent.lower()):
                raise _HubError(412, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.commits[head].files)
            for line in lines[1:]:
                key, value = line["key"], line["value"]
                path = value.get("path", "")
                if key == "file":
                    data = (
                        base64.b64decode(value["content"])
                        if value.get("encoding") == "base64"
                        else value["content"].encode()
                    )
                    files[path] = Blob(data, lfs=False)
                elif key == "lfsFile":
                    data = repo.lfs_objects.get(value["oid"])
                    if data is None:
                        raise _HubError(422, f"LFS object {value['oid']} for {path} was never uploaded")
                    files[path] = Blob(data, lfs=True)
                elif key == "deletedFile":
                    if path not in files:
                        raise _HubError(404, f"Entry not found: {path}", "EntryNotFound")
                    del files[path]
                elif key == "deletedFolder":
                    prefix = path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise _HubError(404, f"Folder not found: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise _HubError(400, f"unknown commit operation {key!r}")
            commit = self.hub.new_commit(
                repo,
                head,
                files,
                header.get("summary") or "update",
                header.get("description") or "",
                self.user or "anonymous",
            )
            out: dict[str, Any] = {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{self._repo_url(repo)}/commit/{commit.sha}",
            }
            if create_pr and ref[0] == "branch":
                num = max(repo.prs, default=0) + 1
                repo.prs[num] = commit.sha
                out["pullRequestUrl"] = f"{self._repo_url(repo)}/discussions/{num}"
            else:
                repo.set_head(ref, commit.sha)
        return self._json(out)

    def create_branch(
        self, repo_type: str, repo_id: str, branch: str, _sub: str
    ) -> tuple[int, dict[str, str], bytes]:
        payload = json.loads(self.body or b"{}")
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            if branch in repo.branches:
                raise _HubError(409, f"Reference refs/heads/{branch} already exists")
            start = self._resolve(repo, payload.get("startingPoint") or "main")
            repo.branches[branch] = start.sha
        return self._json({})

    def delete_branch(
        self, repo_type: str, repo_id: str, branch: str, _sub: str
    ) -> tuple[int, dict[str, str], bytes]:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            if branch not in repo.branches or branch == "main":
                raise _HubError(
                    404 if branch != "main" else 403, f"cannot delete branch {branch}", "RevisionNotFound"
                )
            del repo.branches[branch]
        return self._json({})

    def create_tag(
        self, repo_type: str, repo_id: str, rev: str, _sub: str
    ) -> tuple[int, dict[str, str], bytes]:
        payload = json.loads(self.body or b"{}")
        tag = payload.get("tag")
        if not tag:
            raise _HubError(400, "tag is required")
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            target = self._resolve(repo, rev)
            if tag in repo.tags:
                raise _HubError(409, f"Tag {tag} already exists")
            repo.tags[tag] = target.sha
        return self._json({})

    def delete_tag(
        self, repo_type: str, repo_id: str, tag: str, _sub: str
    ) -> tuple[int, dict[str, str], bytes]:
        with self.hub.lock:
            repo = self._repo(repo_type, repo_id, write=True)
            if tag not in repo.tags:
                raise _HubError(404, f"Tag {tag} not found", "RevisionNotFound")
            del repo.tags[tag]
        return self._json({})
