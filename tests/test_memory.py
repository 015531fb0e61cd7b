"""Memory bounds (musiq.engine.memory): glibc's mmap threshold stays fixed once a model is loaded,
so blocks of ever-new sizes (the activations of images of ever-new sizes) are mapped and
given back instead of fragmenting a heap that never shrinks. Checked through glibc's own
counters (mallinfo2), in a fresh process per case: deterministic, no RSS timing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# Blocks of new, decreasing sizes (4 MiB down), each freed before the next, as passes over
# images of new sizes allocate them: which of them were mapped (mmap).
SCRIPT = r"""
import ctypes, json, sys
sys.path.insert(0, sys.argv[1])
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]
libc = ctypes.CDLL("libc.so.6")
if not hasattr(libc, "mallinfo2"):
    print(json.dumps(None)); sys.exit()
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
from musiq import memory
if sys.argv[2] == "unbound":
    memory.unbound()
if sys.argv[3]:
    import musiq
    musiq.load(sys.argv[3], device="cpu")
else:
    memory.bound_allocator()
mapped = []
for i in range(16):
    before = libc.mallinfo2().hblks
    p = libc.malloc(4 * 2**20 - i * 65536)
    mapped.append(libc.mallinfo2().hblks > before)
    libc.free(p)
print(json.dumps({"mapped": mapped}))
"""


def run(mode: str, checkpoint: str = "", env: dict | None = None) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, SRC, mode, checkpoint],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": SRC, **(env or {})})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result is None:
        pytest.skip("no mallinfo2 (glibc < 2.33)")
    return result


def test_loading_a_model_fixes_the_mmap_threshold_when_asked(ckpt_1class):
    bounded = run("bound", str(ckpt_1class), {"MUSIQ_MMAP_THRESHOLD": "131072"})
    # Every block of a new size above the threshold is mapped (and unmapped when freed).
    assert all(bounded["mapped"]), bounded


def test_without_the_bound_new_sizes_come_from_the_heap():
    # glibc's default (what musiq did before): the first free raises the threshold to 4 MiB,
    # so the later blocks are carved from the heap. The check above can tell the two apart.
    unbounded = run("unbound")
    assert unbounded["mapped"][0] and not any(unbounded["mapped"][1:]), unbounded


def test_bound_is_idempotent_and_release_is_safe():
    from musiq import memory
    assert memory.bound_allocator() is memory.bound_allocator()
    assert memory.release() in (True, False)
    from musiq.engine import stream
    assert stream.release is memory.release and 1 <= stream.RELEASE_EVERY <= 32
    assert memory.MMAP_THRESHOLD_BYTES <= 2**20 < 4 * 2**20


def test_threshold_override(monkeypatch):
    from musiq import memory
    for text, want in (("", memory.MMAP_THRESHOLD_BYTES), ("1048576", 2**20), ("0", 0),
                       ("-5", 0), ("lots", memory.MMAP_THRESHOLD_BYTES),
                       (str(2**40), 32 * 2**20)):
        monkeypatch.setenv(memory.ENV_THRESHOLD, text)
        assert memory._threshold() == want, text
