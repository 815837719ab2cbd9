"""A local stand-in for Slack's Web API and an incoming webhook, for tests.

An `http.server` in a thread on 127.0.0.1 (a free port). It records every request (method,
path, headers, form or JSON body) and answers like Slack: chat.postMessage with
`{"ok": true, "channel": ..., "ts": "<increasing>"}`, chat.update with ok, the files upload
steps (files.getUploadURLExternal, the upload itself, files.completeUploadExternal), and the
webhook path `/services/...` with `ok`. It can be scripted: `fail(429, times=k, retry_after=N)`,
`fail(500, times=k)`, `down()` (stops listening: connection refused) and `up()` (the same port).
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CHANNEL_ID = "C0TOLLWATCH"
WEBHOOK_PATH = "/services/T000/B000/webhooksecret0123456789"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)
    raw: bytes = b""

    @property
    def api(self) -> str:
        """The Web API method ("chat.postMessage") or "webhook"."""
        if self.path.startswith("/services/"):
            return "webhook"
        return self.path.rsplit("/", 1)[-1]


@dataclass
class _Scripted:
    status: int
    times: int
    retry_after: int | None
    body: str


class SlackStub:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.port = 0
        self._script: list[_Scripted] = []
        self._lock = threading.Lock()
        self._ts = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.refused = 0  # requests answered with an error by the script
        self.scopes: str | None = None  # auth.test's X-OAuth-Scopes header, when set

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> SlackStub:
        self.up()
        return self

    def up(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                stub._handle(self)

            def do_GET(self) -> None:
                stub._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    def down(self) -> None:
        """Stop listening: clients get connection refused until `up()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    stop = down

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"

    # ---- scripting ---------------------------------------------------------------------------
    def fail(self, status: int, times: int = 1, retry_after: int | None = None,
             body: str | None = None) -> None:
        """The next `times` requests are answered with `status` (and Retry-After)."""
        if body is None:
            body = json.dumps({"ok": False, "error": "ratelimited" if status == 429
                               else "internal_error"})
        with self._lock:
            self._script.append(_Scripted(status, times, retry_after, body))

    # ---- views -------------------------------------------------------------------------------
    def calls(self, api: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if api is None or r.api == api]

    def posts(self) -> list[Request]:
        return self.calls("chat.postMessage")

    # ---- answering ---------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        ctype = h.headers.get("Content-Type", "")
        body: dict[str, Any] = {}
        if "json" in ctype and raw:
            body = json.loads(raw)
        path = urlsplit(h.path).path
        if "x-www-form-urlencoded" in ctype and raw and not path.startswith("/upload/"):
            body = {k: v[0] if len(v) == 1 else v
                    for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        request = Request(h.command, path, {k: v for k, v in h.headers.items()}, body, raw)
        with self._lock:
            self.requests.append(request)
            scripted = None
            if self._script:
                scripted = self._script[0]
                scripted.times -= 1
                if scripted.times <= 0:
                    self._script.pop(0)
        if scripted is not None:
            self.refused += 1
            headers = {"Content-Type": "application/json"}
            if scripted.retry_after is not None:
                headers["Retry-After"] = str(scripted.retry_after)
            self._answer(h, scripted.status, scripted.body, headers)
            return
        if request.api == "webhook":
            self._answer(h, 200, "ok", {"Content-Type": "text/plain"})
            return
        headers = {"Content-Type": "application/json"}
        if request.api == "auth.test" and self.scopes is not None:
            headers["X-OAuth-Scopes"] = self.scopes
        self._answer(h, 200, json.dumps(self._api(request)), headers)

    def _api(self, request: Request) -> dict[str, Any]:
        body = request.body
        if request.api == "chat.postMessage":
            n = next(self._ts)
            return {"ok": True, "channel": CHANNEL_ID, "ts": f"{1700000000 + n}.{n:06d}",
                    "message": {"text": body.get("text", "")}}
        if request.api == "chat.update":
            return {"ok": True, "channel": body.get("channel"), "ts": body.get("ts"),
                    "text": body.get("text", "")}
        if request.api == "files.getUploadURLExternal":
            n = next(self._ts)
            return {"ok": True, "upload_url": f"http://127.0.0.1:{self.port}/upload/F{n}",
                    "file_id": f"F{n}"}
        if request.path.startswith("/upload/"):
            return {"ok": True}
        if request.api == "files.completeUploadExternal":
            return {"ok": True, "files": [{"id": f["id"]} for f in
                                          json.loads(body.get("files", "[]"))]}
        if request.api == "auth.test":
            return {"ok": True, "user_id": "U0BOT", "team_id": "T000"}
        return {"ok": False, "error": "unknown_method"}

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, body: str,
                headers: dict[str, str]) -> None:
        data = body.encode()
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
