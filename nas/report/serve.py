"""``nas report --serve``: the report on localhost, rebuilt while the study runs.

A background thread looks at the study's storage every ``interval_s`` seconds and rebuilds the
page when it changed; the page polls ``version.json`` and reloads itself (keeping its scroll
position) when the version differs from its own.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from nas.errors import NasError
from nas.report.page import write_report
from nas.study.prepare import JOURNAL_FILE


def _stamp(run_dir: Path) -> Any:
    """Something that changes when the study's trials do (cheap for the journal file)."""
    journal = run_dir / JOURNAL_FILE
    if journal.exists():
        stat = journal.stat()
        return (stat.st_size, stat.st_mtime_ns)
    from nas.results.runs import open_run

    study, _ = open_run(run_dir)  # a database: ask it
    return tuple((t.number, t.state.name) for t in study.get_trials(deepcopy=False))


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass  # a page polling every few seconds would fill the terminal

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


class ReportServer:
    """Serves a run's report folder and keeps it current; ``serve_forever`` blocks."""

    def __init__(self, run_dir: str | Path, *, output: str | Path | None = None,
                 host: str = "127.0.0.1", port: int = 8050, interval_s: float = 10.0,
                 reference: Mapping[str, float] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.output = Path(output) if output else self.run_dir / "report"
        self.interval_s = interval_s
        self.reference = reference
        self.log = log or (lambda _: None)
        self._stop = threading.Event()
        self._stamp = _stamp(self.run_dir)
        self.build()
        handler = functools.partial(_Handler, directory=str(self.output))
        try:
            self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise NasError(f"--port {port}: cannot listen on {host} ({exc.strerror or exc})"
                           ) from None
        self._watcher = threading.Thread(target=self._watch, name="report-watch", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def build(self) -> None:
        write_report(self.run_dir, output=self.output, reference=self.reference,
                     refresh_s=self.interval_s)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                stamp = _stamp(self.run_dir)
                if stamp != self._stamp:
                    self.build()
                    self._stamp = stamp  # only once built: a failed build is tried again
                    self.log("report rebuilt")
            except Exception as exc:  # keep serving the last good page
                self.log(f"report not rebuilt: {type(exc).__name__}: {exc}")

    def serve_forever(self) -> None:
        self._watcher.start()
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self.httpd.server_close()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` from another thread."""
        self._stop.set()
        self.httpd.shutdown()


def serve(run_dir: str | Path, *, stream: TextIO, **options: Any) -> None:
    """Serve the report of ``run_dir`` until interrupted."""
    server = ReportServer(run_dir, log=lambda m: print(m, file=stream, flush=True), **options)
    print(f"serving the report of {run_dir} at {server.url} (rebuilt every "
          f"{server.interval_s:g} s while the study changes; Ctrl-C stops)", file=stream,
          flush=True)
    server.serve_forever()
