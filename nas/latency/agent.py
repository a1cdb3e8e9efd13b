"""The latency agent: measures CoreML packages on the machine (or tethered iPhone) it runs on.

A search reaches the device through one of two doors:

* **HTTP** (``nas latency-agent``): ``GET /v1/info`` says what the agent measures (device, compute
  units, backend, versions); ``POST /v1/measure`` takes a zipped ``.mlpackage`` (the candidate as
  ``nas export`` converts it, with its spec in the package metadata) and returns latency
  statistics. Loopback by default; on any other address a token is required. Uploads are bounded;
  a bad token, an oversized upload or a corrupt package gets a clear error and the agent keeps
  serving. Device jobs queue one at a time behind a lock.
* **Ray** (:class:`RayDeviceOracle`): the same runner as a Ray task that needs one unit of a custom
  resource (``iphone`` on the Mac node that has the phone), so device jobs queue in Ray.

Runners:

* :class:`CoreMLRunner` (macOS): loads the package with coremltools and times predictions with
  coremltools' ``MLModelBenchmarker``, on the Mac itself or on a tethered iPhone through
  coremltools' ``remote_device`` runner app.
* :class:`LocalRunner` (anywhere): rebuilds the network from the spec in the package's metadata
  and times PyTorch on this machine's CPU. It is labelled as such and exists so that the whole
  path (conversion, upload, protocol, statistics, cache) runs end to end where no Mac is.

Both follow ModelBench's protocol: ``rounds`` x ``iterations`` timed predictions after one warm-up
per round; each round's value is the mean after trimming the fastest and slowest ``trim`` share;
when the rounds disagree by more than ``max_spread`` (10 %), they are measured again (up to
``attempts`` times) and the result says how many attempts it took.
"""

from __future__ import annotations

import dataclasses
import hmac
import io
import ipaddress
import json
import platform
import shutil
import statistics
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from mobilevit import ArchSpec, SpecError
from nas.errors import NasError
from nas.latency.base import LatencyResult, context_key

API = "/v1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 200


class AgentError(NasError):
    """The agent could not measure (unreachable, refused, or a bad package)."""


@dataclass(frozen=True)
class Protocol:
    """ModelBench-style measurement settings (defaults: 5 rounds x 20 iterations)."""

    rounds: int = 5
    iterations: int = 20
    trim: float = 0.2  # share dropped at each end of a round (ModelBench: 10 of 50)
    max_spread: float = 0.10
    attempts: int = 3

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        known = {k: data[k] for k in ("rounds", "iterations", "trim", "max_spread", "attempts")
                 if k in data}
        try:
            protocol = cls(**{k: type(getattr(cls, k))(v) for k, v in known.items()})
        except (TypeError, ValueError) as exc:
            raise AgentError(f"measurement options {known}: {exc}") from None
        if protocol.rounds < 1 or protocol.iterations < 1 or not 0 <= protocol.trim < 0.5 \
                or protocol.attempts < 1:
            raise AgentError(f"measurement options {known}: rounds, iterations and attempts "
                             "must be >= 1 and trim in [0, 0.5)")
        return protocol


def trimmed_mean(samples: Sequence[float], trim: float) -> float:
    """Mean after dropping the ``trim`` share of the fastest and of the slowest samples."""
    ordered = sorted(samples)
    cut = int(len(ordered) * trim)
    return statistics.fmean(ordered[cut:len(ordered) - cut] or ordered)


def run_protocol(time_round: Callable[[int], list[float]], protocol: Protocol,
                 **context: Any) -> LatencyResult:
    """Run ``protocol`` with ``time_round(iterations)`` (one warm-up, then timed predictions in
    ms) and summarise: median and trimmed mean of all samples, rounds' spread, attempts."""
    attempt = 0
    while True:
        attempt += 1
        rounds = [time_round(protocol.iterations) for _ in range(protocol.rounds)]
        means = [trimmed_mean(r, protocol.trim) for r in rounds]
        spread = (max(means) - min(means)) / statistics.median(means)
        if spread <= protocol.max_spread or attempt == protocol.attempts:
            break
    samples = [s for r in rounds for s in r]
    result = LatencyResult.from_samples(samples, **context)
    details = {**result.details, "round_means_ms": [round(m, 4) for m in means],
               "round_spread": round(spread, 4), "attempts": attempt,
               "trimmed_mean_rule": f"mean per round after dropping {protocol.trim:.0%} at "
                                    "each end, averaged over rounds"}
    return dataclasses.replace(result, trimmed_mean_ms=round(statistics.fmean(means), 4),
                               details=details)


def read_package(archive: bytes, workdir: Path, max_bytes: int) -> Path:
    """Unpack a zipped ``.mlpackage`` into ``workdir`` and check that it is a CoreML package.

    Raises AgentError naming what is wrong: not a zip, unsafe or oversized members, no package,
    or a model description coremltools cannot read.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(archive))
    except zipfile.BadZipFile:
        raise AgentError("the upload is not a zip archive of an .mlpackage") from None
    with zf:
        total = 0
        for info in zf.infolist():
            name = Path(info.filename)
            if name.is_absolute() or ".." in name.parts:
                raise AgentError(f"unsafe path in the archive: {info.filename}")
            total += info.file_size
            if total > max_bytes:
                raise AgentError(f"the package unpacks to more than {max_bytes // 2**20} MB")
        try:
            zf.extractall(workdir)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise AgentError(f"corrupt archive: {exc}") from None
    packages = [p for p in workdir.rglob("*.mlpackage") if p.is_dir()]
    if len(packages) != 1 or not (packages[0] / "Manifest.json").exists():
        raise AgentError("the archive must hold one .mlpackage folder with its Manifest.json")
    try:
        import coremltools as ct

        ct.utils.load_spec(str(packages[0]))
    except Exception as exc:  # coremltools raises assorted types for a broken package
        raise AgentError(f"corrupt CoreML package: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    return packages[0]


def package_metadata(package: Path) -> dict[str, str]:
    """The user-defined metadata of a CoreML package (``nas export`` stores the spec there)."""
    import coremltools as ct

    return dict(ct.utils.load_spec(str(package)).description.metadata.userDefined)


def zip_package(package: Path) -> bytes:
    """A ``.mlpackage`` folder as zip bytes (what ``POST /v1/measure`` takes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.rglob("*")):
            if path.is_file():
                zf.write(path, Path(package.name) / path.relative_to(package))
    return buffer.getvalue()


@dataclass(frozen=True)
class LocalRunner:
    """Times the package's network with PyTorch on this machine's CPU (not CoreML; labelled)."""

    threads: int = 1
    name: str = "local"

    def info(self) -> dict[str, Any]:
        import torch

        from nas.latency.local import cpu_name

        return {"backend": "torch-eager (latency agent local runner, not CoreML)",
                "device": f"{cpu_name()}, {self.threads} thread"
                          f"{'s' if self.threads > 1 else ''} ({platform.node() or 'agent'})",
                "compute_units": "cpu", "versions": {"torch": torch.__version__}}

    def measure(self, package: Path, protocol: Protocol, resolution: int) -> LatencyResult:
        import torch

        from mobilevit import MobileViT

        meta = package_metadata(package)
        if "spec_json" not in meta:
            raise AgentError("the package has no spec_json metadata (export it with `nas export`"
                             " or the agent client); the local runner rebuilds the network from it")
        try:
            spec = ArchSpec.from_json(meta["spec_json"])
        except SpecError as exc:
            raise AgentError(f"the package's spec_json: {exc}") from None
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            model = MobileViT(spec).eval()
            x = torch.rand(1, 3, resolution, resolution)

            @torch.no_grad()
            def time_round(iterations: int) -> list[float]:
                model(x)  # the round's warm-up
                out = []
                for _ in range(iterations):
                    start = time.perf_counter()
                    model(x)
                    out.append((time.perf_counter() - start) * 1e3)
                return out

            return run_protocol(time_round, protocol, resolution=resolution, **self.info())
        finally:
            torch.set_num_threads(previous)


@dataclass(frozen=True)
class CoreMLRunner:
    """Times the package with coremltools' MLModelBenchmarker (macOS; unverified here).

    ``device``: None for this Mac, or ``"iphone"`` for the first tethered iPhone, prepared once
    with coremltools' remote-device runner app (needs Xcode and ``team_id``).
    """

    compute_units: str = "ALL"
    device: str | None = None
    team_id: str | None = None
    name: str = "coreml"

    def _device(self) -> Any:
        if self.device is None:
            return None
        import asyncio

        from coremltools.models.ml_program.experimental import remote_device as rd

        found = rd.Device.get_connected_devices(rd.DeviceType.IPHONE)
        if not found:
            raise AgentError("no tethered iPhone (xcrun devicectl list devices found none)")
        credentials = rd.AppSigningCredentials(development_team=self.team_id) \
            if self.team_id else None
        return asyncio.run(found[0].prepare_for_model_debugging(credentials=credentials))

    def info(self) -> dict[str, Any]:
        import coremltools as ct

        where = f"Mac {platform.mac_ver()[0] or platform.platform()}" if self.device is None \
            else f"tethered {self.device}"
        return {"backend": "coreml", "device": where, "compute_units": self.compute_units,
                "versions": {"coremltools": ct.__version__, "os": platform.platform()}}

    def measure(self, package: Path, protocol: Protocol, resolution: int) -> LatencyResult:
        import asyncio

        import coremltools as ct
        from coremltools.models.ml_program.experimental.perf_utils import MLModelBenchmarker

        if platform.system() != "Darwin":
            raise AgentError("the CoreML runner needs macOS (coremltools cannot run models on "
                             f"{platform.system()}); start the agent with --runner local here")
        model = ct.models.MLModel(str(package),
                                  compute_units=getattr(ct.ComputeUnit, self.compute_units))
        benchmarker = MLModelBenchmarker(model=model, device=self._device())
        load = asyncio.run(benchmarker.benchmark_load(iterations=1))

        def time_round(iterations: int) -> list[float]:
            measured = asyncio.run(benchmarker.benchmark_predict(iterations=iterations,
                                                                 warmup=True))
            return [float(s) for s in measured.samples]

        result = run_protocol(time_round, protocol, resolution=resolution, **self.info())
        load_ms = getattr(getattr(load, "statistics", None), "median", None)
        return dataclasses.replace(result, details={**result.details, "load_ms": load_ms})


Runner = LocalRunner | CoreMLRunner


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
                    options = json.loads(self.headers.get("X-Measure-Options") or "{}")
                    protocol = Protocol.from_dict(options)
                    resolution = int(options.get("resolution", 256))
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
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
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
        return self._request("GET", "/info")

    def measure(self, archive: bytes, protocol: Protocol, resolution: int) -> LatencyResult:
        options = {**protocol.__dict__, "resolution": resolution}
        data = self._request("POST", "/measure", archive,
                             {"Content-Type": "application/zip",
                              "X-Measure-Options": json.dumps(options)})
        data["samples_ms"] = tuple(data.get("samples_ms", ()))
        return LatencyResult(**data)


def export_archive(spec: ArchSpec, resolution: int) -> bytes:
    """Convert ``spec`` as ``nas export`` does and zip the package for upload."""
    from nas.export import export_model

    with tempfile.TemporaryDirectory(prefix="nas-agent-client-") as tmp:
        result = export_model(spec, Path(tmp) / "candidate", to="coreml", resolution=resolution)
        archive = zip_package(result.path)
        shutil.rmtree(result.path, ignore_errors=True)
        return archive


def _device_key(spec: ArchSpec, info: dict[str, Any], resolution: int) -> str:
    """The cache key of a measurement by the runner ``info`` describes."""
    context = {k: info.get(k) for k in ("backend", "device", "compute_units", "versions")}
    return context_key(spec, {**context, "resolution": resolution})


@dataclass(frozen=True)
class AgentOracle:
    """The latency oracle that sends each candidate to a latency agent over HTTP."""

    url: str
    resolution: int = 256
    token: str | None = None
    protocol: Protocol = Protocol()
    attempts: int = 4
    backoff_s: float = 1.0
    timeout_s: float = 600.0
    name: str = "agent"

    @property
    def client(self) -> AgentClient:
        return AgentClient(self.url, self.token, self.timeout_s, self.attempts, self.backoff_s)

    def key(self, spec: ArchSpec) -> str:
        return _device_key(spec, _agent_info(self.client), self.resolution)

    def measure(self, spec: ArchSpec) -> LatencyResult:
        return self.client.measure(export_archive(spec, self.resolution), self.protocol,
                                   self.resolution)


_INFO: dict[str, dict[str, Any]] = {}


def _agent_info(client: AgentClient) -> dict[str, Any]:
    """The agent's description, asked once per process (it is part of every cache key)."""
    if client.url not in _INFO:
        _INFO[client.url] = client.info()
    return _INFO[client.url]


@dataclass(frozen=True)
class RayDeviceOracle:
    """Measures on the Ray node that holds the device: each measurement is a Ray task needing
    one unit of ``resource`` (declare it on the Mac: ``ray start --resources='{"iphone": 1}'``),
    so device jobs queue one at a time whatever the number of search workers."""

    runner: Runner
    resolution: int = 256
    resource: str = "iphone"
    protocol: Protocol = Protocol()
    name: str = "ray-device"

    def _remote(self, what: str, spec: ArchSpec | None = None) -> Any:
        import ray

        task = ray.remote(num_cpus=0, resources={self.resource: 1}, max_retries=0)(_device_job)
        return ray.get(task.remote(self.runner, what, spec.to_json() if spec else None,
                                   self.resolution, self.protocol))

    def key(self, spec: ArchSpec) -> str:
        return _device_key(spec, self._remote("info"), self.resolution)

    def measure(self, spec: ArchSpec) -> LatencyResult:
        return self._remote("measure", spec)


def _device_job(runner: Runner, what: str, spec_json: str | None, resolution: int,
                protocol: Protocol) -> Any:
    """Runs on the device's node: describe the runner, or convert and measure a spec."""
    if what == "info":
        return runner.info()
    from nas.export import export_model

    with tempfile.TemporaryDirectory(prefix="nas-device-") as tmp:
        package = export_model(ArchSpec.from_json(spec_json or ""), Path(tmp) / "candidate",
                               to="coreml", resolution=resolution).path
        return runner.measure(package, protocol, resolution)
