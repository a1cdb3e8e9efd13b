"""The latency agent's HTTP server (``nas latency-agent``) around one runner.

Loopback by default; on any other address a token is required (compared in constant time).
Uploads are bounded; a bad token, an oversized upload, an unknown measurement option or a
corrupt package gets a clear error and the agent keeps serving. Device jobs run one at a time
behind a lock; uploads and unpacking run concurrently.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from nas.latency.api import API, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT, OPTIONS_HEADER, parse_options
from nas.latency.errors import AgentError
from nas.latency.package import read_package
from nas.latency.runners import Runner


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass
class AgentServer:
    """The HTTP agent around a runner. ``serve_forever()`` blocks; ``start()`` serves from a
    thread (for tests) and returns the URL."""

    runner: Runner
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    served: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def __post_init__(self) -> None:
        if not self.token and not _is_loopback(self.host):
            raise AgentError(f"--host {self.host}: an agent reachable from other machines needs "
                             "a token (--token or $NAS_AGENT_TOKEN)")

    @property
    def url(self) -> str:
        port = self._server.server_address[1] if self._server else self.port
        return f"http://{self.host}:{port}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # one line per job is printed by the agent itself

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _drain(self, limit: int) -> None:
                """Read and drop a refused request's body (up to ``limit`` bytes) so the client
                gets the answer instead of a broken pipe; beyond that, hang up."""
                try:
                    left = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    left = limit + 1
                if left > limit:
                    self.close_connection = True
                    return
                while left > 0:
                    chunk = self.rfile.read(min(left, 2**20))
                    if not chunk:
                        break
                    left -= len(chunk)

            def _authorised(self) -> bool:
                if not agent.token:
                    return True
                given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                if hmac.compare_digest(given.encode(), agent.token.encode()):
                    return True
                self._reply(401, {"error": "missing or wrong token (Authorization: Bearer ...)"})
                return False

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorised():
                    return
                if self.path != f"{API}/info":
                    self._reply(404, {"error": f"no such endpoint: GET {self.path}"})
                    return
                self._reply(200, {**agent.runner.info(), "api": API, "served": agent.served})

            def do_POST(self) -> None:  # noqa: N802
                limit = int(agent.max_upload_mb * 2**20)
                if not self._authorised():
                    self._drain(limit)
                    return
                if self.path != f"{API}/measure":
                    self._reply(404, {"error": f"no such endpoint: POST {self.path}"})
                    return
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    self._reply(411, {"error": "Content-Length is required"})
                    self.close_connection = True
                    return
                if length > limit:
                    self._drain(4 * limit)  # never stored; a larger body is cut off
                    self._reply(413, {"error": f"upload of {length / 2**20:.1f} MB is over the "
                                               f"agent's limit of {agent.max_upload_mb:g} MB"})
                    return
                body = self.rfile.read(length)
                try:
                    protocol, resolution = parse_options(
                        json.loads(self.headers.get(OPTIONS_HEADER) or "{}"))
                    with tempfile.TemporaryDirectory(prefix="nas-agent-") as tmp:
                        package = read_package(body, Path(tmp), limit * 4)
                        with agent._lock:  # one device job at a time
                            result = agent.runner.measure(package, protocol, resolution)
                            agent.served += 1
                except (AgentError, ValueError) as exc:
                    self._reply(400, {"error": str(exc)})
                    return
                except Exception as exc:  # a runner failure is the agent's, not the client's
                    self._reply(500, {"error": f"{type(exc).__name__}: {exc}"})
                    return
                self._reply(200, result.to_dict())

        return Handler

    def start(self) -> str:
        """Serve from a daemon thread; returns the URL (port 0 picks a free port)."""
        self._server = ThreadingHTTPServer((self.host, self.port), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    def serve_forever(self) -> None:
        self._server = ThreadingHTTPServer((self.host, self.port), self._handler())
        self._server.serve_forever()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
