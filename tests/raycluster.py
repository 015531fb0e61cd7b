"""A local Ray cluster for tests: ``ray start --head --block`` on 127.0.0.1 in its own session,
stopped by the process ids of that session (never by name: other Rays may run here)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving import free_port

SRC = Path(__file__).resolve().parents[1] / "src"
#: Token authentication would need a token shared by the driver; the cluster is loopback-only.
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class RayCluster:
    """A head node with ``num_cpus`` CPUs; ``address`` is its GCS address."""

    def __init__(self, num_cpus: int = 2, timeout_s: float = 180.0) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Short: Ray's socket paths under it must stay within the 107-byte limit.
        self.temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
        self.log = open(Path(self.temp_dir) / "start.log", "w+")
        ray = Path(sys.executable).with_name("ray")
        cmd = [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
               "--port", str(self.port), "--num-cpus", str(num_cpus),
               "--include-dashboard", "false", "--disable-usage-stats",
               "--ray-client-server-port", str(free_port()),
               "--dashboard-agent-listen-port", str(free_port()),
               "--temp-dir", self.temp_dir]
        env = {**os.environ, **ENV,
               "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited:\n{self.output()}")
            if "Ray runtime started" in self.output():
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", self.port)) == 0:
                        return
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Ray not started after {timeout_s} s:\n{self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def pids(self) -> list[int]:
        """Processes of this cluster: those in the session of ``ray start``."""
        out = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            # Fields 3 and 6 of /proc/PID/stat: state (Z: exited, not yet reaped), session.
            if fields[0] != "Z" and int(fields[3]) == self.proc.pid:
                out.append(int(entry.name))
        return out

    def replica_pids(self, name: str = "MusiqReplica") -> list[int]:
        """Process ids of the Serve replicas of deployment ``name`` in this cluster."""
        found = []
        for pid in self.pids():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::ServeReplica:") and f":{name}" in cmd.split("\0")[0]:
                found.append(pid)
        return found

    def stop(self) -> None:
        """SIGTERM to every process of the session, then SIGKILL to what is left."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while self.pids() and time.monotonic() < deadline:
                time.sleep(0.2)
        self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
