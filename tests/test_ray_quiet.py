"""``musiq score --engine ray``: a successful run's stderr holds only musiq's own lines (no
token-authentication notice, no error-level core-worker line, no Ray Data plan)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import GOLDEN

pytest.importorskip("ray.data")


def test_ray_engine_success_is_quiet(ckpt_1class, tmp_path):
    images = [GOLDEN / "images" / n for n in ("coffee_30x20_q90.jpg", "chelsea_20x30_q90.jpg")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    r = subprocess.run([sys.executable, "-m", "musiq.cli.main", "score", *map(str, images),
                        "--model", str(ckpt_1class), "--engine", "ray", "--ray-cpus", "2",
                        "--format", "csv"], capture_output=True, text=True, timeout=600,
                       env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 3  # header + 2 rows
    noise = [line for line in r.stderr.splitlines() if not line.startswith("musiq score: ")]
    assert noise == []
    assert "musiq score: 2 scored, 0 failed" in r.stderr
