"""Helpers for tests of ``musiq serve``: run the real command on a free loopback port."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

READY_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``musiq serve ARGS`` as a subprocess on 127.0.0.1; ``stop()`` returns its exit code."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 preexec_fn=None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="musiq-serve-", suffix=".log")
        cmd = [sys.executable, "-m", "musiq.cli.main", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--device", "cpu", "--no-access-log", *args]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=preexec_fn,
                                     env={**os.environ, **(env or {})})
        self._wait_ready()

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"musiq serve exited with {self.proc.returncode}:\n"
                                   f"{self.output()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"musiq serve not ready after {READY_TIMEOUT_S} s:\n{self.output()}")

    def stop(self) -> int:
        """SIGTERM (what a service manager sends), then wait for a clean exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
