"""``muselens serve`` as a child process: what the demo, the benchmarks and the fault tests run.

:meth:`ServerProcess.start` waits for the ``serving ... on HOST:PORT`` line ``serve`` prints
once it listens (so ``--port 0`` works), and keeps draining its stdout so the child never
blocks; :meth:`ServerProcess.stop` is a graceful SIGTERM, :meth:`ServerProcess.kill` a crash.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

READY = re.compile(r"serving \S+ \S+ on [^ ]*:(\d+) ")
ADMIN = re.compile(r"; admin on [^ ;]*:(\d+)")
METRICS = re.compile(r"; metrics on [^ ;]*:(\d+)")


class ServerProcess:
    """``muselens serve BUNDLE`` in a child process, ready once it prints its ``serving`` line.

    Its stderr goes to ``log`` (appended), or to a temporary file when no log is given, so a
    server that fails to start is always reported with the end of what it said.
    """

    def __init__(self, bundle: Path | str, *, port: int = 0, token_file: Path | None = None,
                 threads: int | None = None, log: Path | None = None, extra: tuple[str, ...] = ()):
        self.bundle, self.requested_port, self.token_file = Path(bundle), port, token_file
        self.threads, self.log, self.extra = threads, log, extra
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.admin_port: int | None = None  # from the banner, when ``extra`` holds --admin-port
        self.metrics_port: int | None = None  # from the banner, when ``extra`` holds --metrics-port
        self.ready_at: float | None = None
        self.banner = ""
        self.stopped_by: str | None = None  # SIGTERM, SIGKILL or "had exited", once stopped
        self._stderr: IO[bytes] | None = None

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "muselens", "serve", str(self.bundle), "--host", "127.0.0.1",
               "--port", str(self.requested_port)]
        if self.threads is not None:
            cmd += ["--threads", str(self.threads)]
        if self.token_file is not None:
            cmd += ["--token-file", str(self.token_file)]
        return cmd + list(self.extra)

    def start(self, timeout: float = 180.0) -> ServerProcess:
        """Start and wait for the ``serving ... on host:port`` line; RuntimeError (with the end of
        the server's log) if it never comes."""
        if self.log is not None:
            self._stderr = open(self.log, "ab")  # noqa: SIM115 -- closed in close_log()
        else:
            self._stderr = tempfile.TemporaryFile(prefix="muselens-serve-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                        stdin=subprocess.DEVNULL)
        if self.log is not None:  # the child holds its own handle; log_tail reads the file by path
            self._stderr.close()
            self._stderr = None
        lines: queue.Queue = queue.Queue()

        def read() -> None:  # keeps draining stdout so the child never blocks on a full pipe
            for line in self.process.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, name="serve-stdout", daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            self.kill()
            raise RuntimeError(f"muselens serve printed nothing within {timeout:.0f} s; its log ends: "
                               f"{self.log_tail()}") from None
        match = READY.search(line or "")
        if match is None:
            code = self.process.wait(timeout=30) if line is None else self.kill()
            raise RuntimeError(f"muselens serve did not start (exit {code}, printed {line!r}); its log ends: "
                               f"{self.log_tail()}")
        self.port = int(match.group(1))
        admin = ADMIN.search(line)
        self.admin_port = int(admin.group(1)) if admin is not None else None
        metrics = METRICS.search(line)
        self.metrics_port = int(metrics.group(1)) if metrics is not None else None
        self.banner = line.strip()
        self.ready_at = time.monotonic()
        return self

    def log_tail(self, chars: int = 2000) -> str:
        """The last ``chars`` characters the server wrote to stderr."""
        if self.log is not None:
            data = self.log.read_bytes() if self.log.exists() else b""
        elif self._stderr is not None and not self._stderr.closed:
            self._stderr.flush()
            self._stderr.seek(0)
            data = self._stderr.read()
        else:
            data = b""
        return data.decode("utf-8", "replace")[-chars:].strip() or "(empty)"

    def close_log(self) -> None:
        """Drop the temporary log (when no ``log`` path was given); its tail is gone after this."""
        if self._stderr is not None:
            self._stderr.close()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("server not started")
        return self.process.pid

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_address(self) -> str:
        """Where Admin calls go: the admin port when the server has one, else the main port."""
        return f"127.0.0.1:{self.admin_port or self.port}"

    def model_state(self, timeout: float = 10.0) -> dict[str, int]:
        """``muselens_model_state_bytes`` by part, scraped from the server's metrics endpoint (it
        must have been started with ``--metrics-port``): what its model holds beside the network."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        if self.metrics_port is None:
            raise RuntimeError("the server has no metrics endpoint (start it with --metrics-port)")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=timeout) as reply:
            text = reply.read().decode()
        return {sample.labels["part"]: int(sample.value) for family in text_string_to_metric_families(text)
                if family.name == "muselens_model_state_bytes" for sample in family.samples}

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> int | None:
        """SIGKILL (a crash, as far as clients can tell); returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.stopped_by = "SIGKILL"
        return self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful stop), SIGKILL if it has not exited within ``timeout``; the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.stopped_by = "SIGTERM"
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return self.kill()
        self.stopped_by = self.stopped_by or "had exited"
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.close_log()
