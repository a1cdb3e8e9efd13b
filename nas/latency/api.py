"""The agent's HTTP API, shared by the server and the client: the endpoints, the defaults, and
the measurement options sent in the ``X-Measure-Options`` header (an unknown option is refused,
on both sides, naming it).

* ``GET /v1/info``: what the agent measures (backend, device, compute units, versions).
* ``POST /v1/measure``: a zipped ``.mlpackage``; the options say how to measure; the answer is
  the latency result.
"""

from __future__ import annotations

import json
from typing import Any

from nas.latency.errors import AgentError
from nas.latency.stats import MeasureProtocol

API = "/v1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 200
OPTIONS_HEADER = "X-Measure-Options"
DEFAULT_RESOLUTION = 256


def measure_options(protocol: MeasureProtocol, resolution: int) -> dict[str, Any]:
    """The options of a measurement (the protocol's settings and the input resolution)."""
    return {**protocol.to_dict(), "resolution": resolution}


def parse_options(options: Any) -> tuple[MeasureProtocol, int]:
    """The protocol and resolution that measurement options give (missing ones take their
    defaults). Raises AgentError for an unknown option, naming it, or a bad value; ValueError
    for a resolution that is not a number."""
    if not isinstance(options, dict):
        raise AgentError(f"{OPTIONS_HEADER}: expected a JSON object, got {json.dumps(options)}")
    protocol = MeasureProtocol.from_dict(options, others=("resolution",))
    return protocol, int(options.get("resolution", DEFAULT_RESOLUTION))
