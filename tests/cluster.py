"""A real multi-node Ray cluster on this machine, for tests: every node is a `ray start --block`
process of its own, so a node can be killed the way a machine dies.

Each node runs in a session of its own (``start_new_session``): its `ray start` process is the
session leader, and every process of the node (GCS, raylet, agents, and the workers, which the
raylet puts in process groups of their own) keeps that session id, so ``kill(node)`` and
``stop()`` find all of them by session, whatever their process group or parent.

Isolation from other Ray instances on the machine (tests that call ``ray.init()``, other users):
a private ``--temp-dir`` per node under one short folder (Unix socket paths must stay under 107
bytes, so not pytest's long ``tmp_path``), a free GCS port, the dashboard off, usage stats off,
``RAY_ADDRESS`` removed from the environment, and a private token (``RAY_AUTH_MODE=token`` and
``RAY_AUTH_TOKEN``): Ray 2.60 turns token authentication on for a new head, and a driver or node
that connects by explicit address must set ``RAY_AUTH_MODE=token`` itself (the token alone is not
enough) or is refused with ``InvalidAuthToken``. The token in the environment also keeps Ray
from reading or writing ``~/.ray/auth_token``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 120.0


def ray_cli() -> str | None:
    """The `ray` CLI of this Python's environment (the project's .venv), else the one on PATH,
    else None."""
    beside = Path(sys.executable).parent / "ray"
    if beside.exists():
        return str(beside)
    return shutil.which("ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list[int]:
    """Live processes in session ``sid`` (zombies excluded)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        # fields after the command (which may hold spaces and parentheses): state ppid pgrp session
        rest = stat[stat.rfind(")") + 2:].split()
        if rest[0] != "Z" and int(rest[3]) == sid:
            pids.append(pid)
    return pids


def processes_named(sid: int, title: str) -> list[int]:
    """Processes of session ``sid`` whose command line starts with ``title`` (a Ray worker shows
    ``ray::<task function>`` while it runs a task, ``ray::IDLE`` otherwise)."""
    out = []
    for pid in session_pids(sid):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if cmd.startswith(title):
            out.append(pid)
    return out


@dataclass
class Node:
    """One `ray start --block` process and what it was started with."""

    name: str
    process: subprocess.Popen
    log: Path
    temp_dir: Path
    tmp: Path  # the node's TMPDIR: what its tasks put in temporary files lands here
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def sid(self) -> int:
        return self.process.pid  # the session leader

    def pids(self) -> list[int]:
        return session_pids(self.sid)

    def running(self, task_name: str) -> list[int]:
        """Worker processes of this node running a task of the function ``task_name``."""
        return processes_named(self.sid, f"ray::{task_name}")

    def tasks_run(self) -> set[str]:
        """Names of the functions whose tasks this node's workers ran (Ray's ``:task_name:``
        lines in the worker logs, which outlive a killed node)."""
        names = set()
        for log in self.temp_dir.glob("session_2*/logs/worker-*.out"):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith(":task_name:"):
                    names.add(line.removeprefix(":task_name:").strip())
        return names


class RayCluster:
    """Nodes started with the `ray` CLI; ``stop()`` kills every process of every node."""

    def __init__(self, ray: str, root: Path | None = None, object_store_mb: int = 128) -> None:
        self.ray = ray
        self.root = Path(root or tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
        self.object_store_mb = object_store_mb
        self.port = free_port()
        self.token = secrets.token_hex(32)
        self.nodes: list[Node] = []
        self.address = ""  # host:port of the head's GCS, set by start_head

    @property
    def env(self) -> dict[str, str]:
        """The environment of the nodes and of a driver connecting to them."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0")
        return env

    def _start(self, name: str, args: list[str], resources: dict[str, float]) -> Node:
        temp_dir = self.root / name
        temp_dir.mkdir(parents=True, exist_ok=True)
        log = self.root / f"{name}.log"
        tmp = temp_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        cmd = [self.ray, "start", "--block", *args, f"--temp-dir={temp_dir}",
               "--disable-usage-stats", "--log-style=record", "--log-color=false",
               f"--object-store-memory={self.object_store_mb * 2**20}",
               f"--dashboard-agent-listen-port={free_port()}"]
        if resources:
            cmd.append(f"--resources={json.dumps(resources)}")
        with open(log, "wb") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env={**self.env, "TMPDIR": str(tmp)},
                                       start_new_session=True)
        node = Node(name, process, log, temp_dir, tmp, resources)
        self.nodes.append(node)
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                text = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"ray start ({name}) did not start: {text}")
            time.sleep(0.2)
        return node

    def start_head(self, num_cpus: int = 1, resources: dict[str, float] | None = None) -> Node:
        node = self._start("head", ["--head", f"--port={self.port}", f"--num-cpus={num_cpus}",
                                    "--include-dashboard=false"], resources or {})
        # `ray start` resolves 127.0.0.1 to the machine's address; it writes what it chose here
        self.address = (node.temp_dir / "ray_current_cluster").read_text().strip()
        return node

    def add_node(self, name: str, num_cpus: int = 1,
                 resources: dict[str, float] | None = None) -> Node:
        if not self.address:
            raise RuntimeError("start the head first")
        return self._start(name, [f"--address={self.address}", f"--num-cpus={num_cpus}"],
                           resources or {})

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> list[int]:
        """Kill every process of ``node`` at once (a machine that dies); returns their pids.

        Signals go out again until none of the node's processes is alive: a process forked
        while the first signals went out, or a killed one the kernel has not yet turned into a
        zombie (which takes a while on a busy machine), is still in the list. The deadline only
        bounds a node that will not die."""
        killed = []
        deadline = time.monotonic() + 60
        while (pids := node.pids()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, sig)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        try:
            node.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return sorted(set(killed))

    def alive(self) -> dict[str, list[int]]:
        """Live processes per node (empty once everything is stopped)."""
        return {n.name: pids for n in self.nodes if (pids := n.pids())}

    def stop(self, timeout: float = 15.0) -> dict[str, list[int]]:
        """Kill every node (SIGTERM, then SIGKILL what is left) and remove the temp folder;
        returns the processes that survived (none, normally)."""
        for node in self.nodes:
            for pid in node.pids():
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout / 2
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        for node in self.nodes:
            self.kill(node)
        deadline = time.monotonic() + timeout / 2
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = self.alive()
        for node in self.nodes:
            if node.process.poll() is None:
                node.process.kill()
            node.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)
        return left

    def logs(self, tail: int = 2000) -> str:
        """The end of each node's `ray start` output (for failure messages)."""
        parts = []
        for node in self.nodes:
            try:
                text = node.log.read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"--- {node.name} ---\n{text[-tail:]}")
        return "\n".join(parts)

