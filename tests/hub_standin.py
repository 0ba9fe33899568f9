"""A local HTTP server on 127.0.0.1 that answers `resolve` requests the way the Hugging Face hub does.

What `huggingface_hub.hf_hub_download` / `get_hf_file_metadata` read (huggingface_hub
file_download.py and utils/_http.py): HEAD and GET on /{repo_id}/resolve/{revision}/{filename},
answered with X-Repo-Commit, ETag and Content-Length, or an error status with X-Error-Code
(RepoNotFound, GatedRepo, RevisionNotFound, EntryNotFound) as the hub sends them. Every request is
recorded, so tests can assert that only config.json was ever asked for.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    files: dict[str, bytes]  # filename -> content (at every revision in `revisions`)
    revisions: tuple[str, ...] | None = ("main",)  # None: any revision (a real repo's pinned commits)
    gated: bool = False  # needs the right token, else 401/403 GatedRepo
    private: bool = False  # needs the right token, else 401 RepoNotFound
    delay_s: float = 0.0  # answer this late (a hub that hangs)
    status: int | None = None  # answer every request with this status (a hub that is down)


@dataclass
class HubStandIn:
    repos: dict[str, Repo] = field(default_factory=dict)
    token: str = "hf_standin_token"
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, auth

    def commit(self, repo_id: str, revision: str) -> str:
        if len(revision) == 40:
            return revision
        return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()

    def start(self) -> str:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                standin.answer(self, body=False)

            def do_GET(self):
                standin.answer(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def requested_files(self) -> set[str]:
        """The file part of every request (an /api/... call counts as its whole path)."""
        return {p.rsplit("/", 1)[-1] if "/resolve/" in p else p for _, p, _ in self.requests}

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(handler.path).path)
        auth = handler.headers.get("Authorization")
        self.requests.append((handler.command, path, auth))
        parts = path.strip("/").split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self.send(handler, 404, {"X-Error-Code": "RepoNotFound"}, b"", body)
        repo_id, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        repo = self.repos.get(repo_id)
        if repo is None:
            return self.send(handler, 404, {"X-Error-Code": "RepoNotFound",
                                            "X-Error-Message": "Repository not found"}, b"", body)
        if repo.delay_s:
            time.sleep(repo.delay_s)
        if repo.status:
            return self.send(handler, repo.status, {}, b"", body)
        authorised = auth == f"Bearer {self.token}"
        if repo.private and not authorised:
            return self.send(handler, 401, {"X-Error-Code": "RepoNotFound",
                                            "X-Error-Message": "Invalid username or password."}, b"", body)
        if repo.gated and not authorised:
            status = 401 if auth is None else 403
            return self.send(handler, status, {"X-Error-Code": "GatedRepo",
                                               "X-Error-Message": "Access to model is restricted."}, b"", body)
        if repo.revisions is not None and revision not in repo.revisions and self.commit(repo_id, "main") != revision:
            return self.send(handler, 404, {"X-Error-Code": "RevisionNotFound",
                                            "X-Error-Message": "Invalid rev id"}, b"", body)
        content = repo.files.get(filename)
        commit = self.commit(repo_id, revision)
        if content is None:
            return self.send(handler, 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit,
                                            "X-Error-Message": "Entry not found"}, b"", body)
        etag = hashlib.sha1(content).hexdigest()
        headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Content-Type": "application/json"}
        return self.send(handler, 200, headers, content, body)

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str], content: bytes,
             body: bool) -> None:
        try:
            handler.send_response(status)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            if body and content:
                handler.wfile.write(content)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass
