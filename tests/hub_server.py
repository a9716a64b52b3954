"""A small in-memory stand-in for the Hugging Face Hub's HTTP API, for tests (NOT the Hub).

No server that accepts uploads is installable from the package registries, so this answers just the endpoints
that ``HfApi.create_repo`` / ``create_branch`` / ``upload_folder`` (regular, non-LFS uploads), ``ModelCard.load``,
``hf_hub_download``, ``snapshot_download`` and ``from_pretrained(repo_id)`` use, over real HTTP on 127.0.0.1.
Writes need ``Authorization: Bearer <token>``; model repos only; one commit per upload.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

USER = "tester"


@dataclass
class Repo:
    """A model repository: per branch, its head commit and files."""

    private: bool
    branches: dict[str, tuple[str, dict[str, bytes]]] = field(default_factory=lambda: {"main": ("0" * 40, {})})


class HubState:
    """Every repository the server holds, and the token it accepts."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lock = threading.Lock()


def _commit_id(parent: str, files: dict[str, bytes]) -> str:
    digest = hashlib.sha1(parent.encode())
    for path in sorted(files):
        digest.update(path.encode() + hashlib.sha1(files[path]).digest())
    return digest.hexdigest()


class Handler(BaseHTTPRequestHandler):
    """Routes the Hub API requests listed in the module docstring."""

    state: HubState
    protocol_version = "HTTP/1.1"
    routes: ClassVar[list[tuple[str, str, str]]] = [
        ("POST", r"/api/repos/create", "create_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", r"/api/whoami-v2", "whoami"),
        ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)", "preupload"),
        ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)", "commit"),
        ("POST", r"/api/models/(?P<repo>[^/]+/[^/]+)/branch/(?P<rev>[^/]+)", "create_branch"),
        ("GET", r"/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?", "model_info"),
        ("GET", r"/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/.*)?", "tree"),
        ("HEAD", r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", "resolve"),
        ("GET", r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", "resolve"),
    ]

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read failures from the client."""

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        for verb, pattern, name in self.routes:
            found = re.fullmatch(pattern, path)
            if verb == method and found:
                params = {key: unquote(value) for key, value in found.groupdict().items() if value is not None}
                getattr(self, name)(**params)
                return
        self._send(404, {"error": f"no route {method} {path}"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        self._route("POST")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _send(self, status: int, payload: Any = None, raw: bytes | None = None,
              headers: dict[str, str] | None = None) -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if raw is None else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.state.token}":
            return True
        self._send(401, {"error": "Invalid credentials in Authorization header"})
        return False

    def _branch(self, repo_id: str, rev: str) -> tuple[str, dict[str, bytes]] | None:
        repo = self.state.repos.get(repo_id)
        if repo is None:
            self._send(404, {"error": "Repository not found"}, headers={"X-Error-Code": "RepoNotFound"})
            return None
        heads = {commit: (commit, files) for commit, files in repo.branches.values()}
        found = repo.branches.get(rev) or heads.get(rev)  # a branch name or a branch's head commit
        if found is None:
            self._send(404, {"error": "Invalid rev id"}, headers={"X-Error-Code": "RevisionNotFound"})
        return found

    def create_repo(self) -> None:
        if not self._authorized():
            return
        payload = json.loads(self._body())
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        with self.state.lock:
            if repo_id in self.state.repos:
                self._send(409, {"error": "You already created this model repo", "url": f"/{repo_id}"})
                return
            self.state.repos[repo_id] = Repo(private=payload.get("visibility") == "private")
        self._send(200, {"url": f"http://{self.headers['Host']}/{repo_id}", "name": repo_id})

    def validate_yaml(self) -> None:
        self._body()
        self._send(200, {"errors": [], "warnings": []})

    def whoami(self) -> None:
        if self._authorized():
            self._send(200, {"type": "user", "name": USER, "orgs": [], "auth": {"accessToken": {"role": "write"}}})

    def preupload(self, repo: str, rev: str) -> None:
        if not self._authorized() or self._branch(repo, rev) is None:
            return
        files = json.loads(self._body())["files"]
        self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                   for f in files]})

    def commit(self, repo: str, rev: str) -> None:
        if not self._authorized():
            return
        lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
        with self.state.lock:
            branch = self._branch(repo, rev)
            if branch is None:
                return
            parent, files = branch
            files = dict(files)
            for line in lines:
                if line["key"] == "file":
                    files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                elif line["key"] == "deletedFile":
                    files.pop(line["value"]["path"], None)
                elif line["key"] != "header":
                    self._send(400, {"error": f"unsupported commit operation {line['key']!r} (no LFS here)"})
                    return
            commit = _commit_id(parent, files)
            self.state.repos[repo].branches[rev] = (commit, files)
        self._send(200, {"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{commit}", "commitOid": commit})

    def create_branch(self, repo: str, rev: str) -> None:
        if not self._authorized():
            return
        self._body()
        with self.state.lock:
            main = self._branch(repo, "main")
            if main is None:
                return
            if rev in self.state.repos[repo].branches:
                self._send(409, {"error": "Reference already exists"})
                return
            self.state.repos[repo].branches[rev] = main
        self._send(200, {})

    def model_info(self, repo: str, rev: str = "main") -> None:
        branch = self._branch(repo, rev)
        if branch is not None:
            commit, files = branch
            self._send(200, {"id": repo, "modelId": repo, "sha": commit, "private": self.state.repos[repo].private,
                             "siblings": [{"rfilename": path} for path in sorted(files)], "tags": []})

    def tree(self, repo: str, rev: str) -> None:
        branch = self._branch(repo, rev)
        if branch is not None:
            self._send(200, [{"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                             for path, data in sorted(branch[1].items())])

    def resolve(self, repo: str, rev: str, file: str) -> None:
        branch = self._branch(repo, rev)
        if branch is None:
            return
        commit, files = branch
        if file not in files:
            self._send(404, {"error": "Entry not found"}, headers={"X-Error-Code": "EntryNotFound"})
            return
        etag = f'"{hashlib.sha1(files[file]).hexdigest()}"'
        self._send(200, raw=files[file], headers={"ETag": etag, "X-Repo-Commit": commit})


def start(token: str) -> tuple[ThreadingHTTPServer, HubState]:
    """Serve on a free port of 127.0.0.1 in a daemon thread; returns the server and its state."""
    state = HubState(token)
    handler = type("BoundHandler", (Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, state


def point_huggingface_hub_at(monkeypatch: Any, server: ThreadingHTTPServer, token: str, cache: str) -> str:
    """Make huggingface_hub (and the libraries built on it) use ``server``, ``token`` and cache ``cache``, as
    ``HF_ENDPOINT``/``HF_TOKEN``/``HF_HUB_CACHE`` would if set before import; returns the endpoint URL."""
    from huggingface_hub import constants

    endpoint = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    # CI runs with HF_HUB_OFFLINE=1 so that nothing reaches the real Hub; the local stand-in must stay reachable.
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return endpoint
