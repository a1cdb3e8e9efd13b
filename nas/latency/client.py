"""The latency agent's HTTP client, with retries: connection failures and 5xx answers are tried
again with exponential backoff; a 4xx answer (a refusal: token, size, options, package) is an
error at once."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from nas.latency.api import API, OPTIONS_HEADER, measure_options, parse_options
from nas.latency.base import LatencyResult
from nas.latency.errors import AgentError
from nas.latency.stats import MeasureProtocol

_sleep = time.sleep  # the wait between tries (the tests count the waits instead)


@dataclass(frozen=True)
class AgentClient:
    """Talks to an agent with retries: ``attempts`` tries, waiting ``backoff_s`` x 2^k between
    them, on connection failures and 5xx answers; a 4xx answer is an error at once."""

    url: str
    token: str | None = None
    timeout_s: float = 600.0
    attempts: int = 4
    backoff_s: float = 1.0

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> dict[str, Any]:
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        last = ""
        for attempt in range(self.attempts):
            if attempt:
                _sleep(self.backoff_s * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url.rstrip("/") + API + path, data=body,
                                             headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                try:
                    message = json.loads(exc.read()).get("error", exc.reason)
                except (ValueError, OSError):
                    message = exc.reason
                if exc.code < 500:
                    raise AgentError(f"latency agent {self.url}: {message}") from None
                last = f"HTTP {exc.code}: {message}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
        raise AgentError(f"latency agent {self.url}: unreachable after {self.attempts} attempts "
                         f"({last})")

    def info(self) -> dict[str, Any]:
        """The agent's ``GET /v1/info``: what it measures (asked anew at every call)."""
        return self._request("GET", "/info")

    def measure(self, archive: bytes, protocol: MeasureProtocol,
                resolution: int) -> LatencyResult:
        """Measure a zipped package with ``protocol`` at ``resolution``."""
        return self.measure_options(archive, measure_options(protocol, resolution))

    def measure_options(self, archive: bytes, options: dict[str, Any]) -> LatencyResult:
        """Measure a zipped package with measurement options as the agent takes them; an
        unknown option is an error here, before anything is sent."""
        try:
            parse_options(options)
        except (AgentError, ValueError) as exc:
            raise AgentError(f"latency agent {self.url}: {exc}") from None
        data = self._request("POST", "/measure", archive,
                             {"Content-Type": "application/zip",
                              OPTIONS_HEADER: json.dumps(options)})
        data["samples_ms"] = tuple(data.get("samples_ms", ()))
        return LatencyResult(**data)
