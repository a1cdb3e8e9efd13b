"""The latency agent's error: what every part of the agent (package checks, runners, the server,
the client, the device oracles) raises when it cannot measure."""

from __future__ import annotations

from nas.errors import NasError


class AgentError(NasError):
    """The agent could not measure (unreachable, refused, or a bad package)."""
