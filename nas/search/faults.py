"""Kill points: the fault tests' way to stop a study at a known moment instead of after a sleep.

With ``NAS_KILL_AT=<point>`` in the environment of ``nas run`` (Ray workers inherit it), the
process that reaches ``<point>`` kills the driver's process group with SIGKILL, as ``kill -9``
or a power cut would, and then itself. The points are the phases of a trial:

- ``dispatched``: the driver recorded the trial as running; its task is not submitted yet;
- ``epoch:<k>``: a worker finished training epoch ``k`` (1-based) and has not yet written its
  checkpoint (the previous epoch's checkpoint is on disk);
- ``returned``: the driver holds the worker's result and has not recorded it yet.

``<point>@<n>`` fires the n-th time a process reaches the point (``returned@4``: after three
results were recorded); a ``/driver`` suffix kills the driver's process group only, so a worker
goes on without its driver (Ray workers have process groups of their own), as after ``kill -9
-PGID`` of a ``nas run``. Unset, every call is a dictionary look-up and nothing else.
"""

from __future__ import annotations

import os
import signal

ENV = "NAS_KILL_AT"
_reached: dict[str, int] = {}  # point -> times this process reached it (only while ENV is set)


def kill_point(point: str, driver_pid: int | None = None) -> None:
    """Kill the driver (``driver_pid``, this process when None) and this process at ``point``
    when ``NAS_KILL_AT`` names it."""
    wanted = os.environ.get(ENV)
    if wanted is None:
        return
    wanted, _, scope = wanted.partition("/")
    name, _, nth = wanted.partition("@")
    if name != point:
        return
    _reached[point] = _reached.get(point, 0) + 1
    if _reached[point] != int(nth or 1):
        return
    pid = os.getpid() if driver_pid is None else driver_pid
    try:
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if scope != "driver":
        os.kill(os.getpid(), signal.SIGKILL)
