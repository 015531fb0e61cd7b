"""Fuzzing in CI (short budget): mutated real JPEG/PNG/GIF/WebP/TIFF/BMP bytes and random
bytes give a decoded image or an ImageError - nothing else - each within a time bound.
The long run is scripts/fuzz_decode.py (crash- and hang-safe, in worker processes)."""
from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzzing import OPS, check_one, mutate, seeds

SEEDS = seeds()
#: Examples per test; MUSIQ_FUZZ_EXAMPLES raises it locally.
EXAMPLES = int(os.environ.get("MUSIQ_FUZZ_EXAMPLES", "500"))
#: Seconds one input may take (generous: CI machines are shared and slow).
TIME_BOUND = 10.0

mutation = st.tuples(st.sampled_from(OPS), st.floats(0, 1, exclude_max=True),
                     st.integers(0, 2**32 - 1))
fuzz_settings = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large])


def timed(data: bytes) -> None:
    t0 = time.perf_counter()
    check_one(data)
    took = time.perf_counter() - t0
    assert took < TIME_BOUND, f"{len(data)} bytes took {took:.1f} s"


@fuzz_settings
@given(seed=st.sampled_from(SEEDS), ops=st.lists(mutation, min_size=1, max_size=6))
def test_mutated_files(seed, ops):
    timed(mutate(seed[1], ops))


@fuzz_settings
@given(magic=st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a",
                              b"RIFF\0\0\0\0WEBPVP8 ", b"II*\0", b"MM\0*", b"BM"]),
       body=st.binary(max_size=2048))
def test_random_bytes(magic, body):
    timed(magic + body)
