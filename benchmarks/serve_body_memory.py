"""Memory of ``musiq serve`` while many clients hold large request bodies, and after they go.

Starts its own server on 127.0.0.1 (random-weight checkpoint from tests/checkpoints.py), opens
N raw uploads that each send all of a SIZE-byte body but its last byte and then wait, and
samples the server's RSS from /proc: before, with all N held, and after they closed. Prints
how many uploads were refused at once (503) and the RSS figures as one JSON line.

    .venv/bin/python benchmarks/serve_body_memory.py --clients 30 --mb 32
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from serving import ServerProcess  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def hold(port: int, size: int) -> tuple[socket.socket, bool]:
    """An upload that sent all but its last byte; True when the server refused it at once."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n"
              "Content-Type: application/octet-stream\r\n\r\n".encode())
    chunk = bytes(1 << 20)
    sent = 0
    try:
        while sent < size - 1:
            n = min(len(chunk), size - 1 - sent)
            s.sendall(chunk[:n])
            sent += n
    except (BrokenPipeError, ConnectionResetError):
        return s, True
    s.settimeout(0.2)
    try:
        return s, s.recv(64).startswith(b"HTTP/1.1 503")
    except socket.timeout:
        return s, False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--mb", type=int, default=32, help="body size in MiB")
    ap.add_argument("server_args", nargs="*", help="extra musiq serve options")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "bench.npz"
        subprocess.run([sys.executable, str(ROOT / "tests" / "checkpoints.py"), str(model),
                        "--classes", "1"], check=True)
        srv = ServerProcess("--model", str(model), "--body-timeout", "120", *args.server_args)
        try:
            before = rss_mib(srv.proc.pid)
            held = [hold(srv.port, args.mb << 20) for _ in range(args.clients)]
            time.sleep(1)
            during = rss_mib(srv.proc.pid)
            for s, _ in held:
                s.close()
            time.sleep(3)
            after = rss_mib(srv.proc.pid)
        finally:
            srv.stop()
    print(json.dumps({"clients": args.clients, "body_mib": args.mb,
                      "refused_503": sum(r for _, r in held), "rss_mib_before": round(before),
                      "rss_mib_held": round(during), "rss_mib_after": round(after)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
