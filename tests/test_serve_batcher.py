"""Parts of the server without HTTP: batcher (a fake model records batches), admission,
metrics text, package data."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
from musiq.serve.batcher import Batcher, BatcherStopped  # noqa: E402
from musiq.serve.limits import Admission, QueueFull  # noqa: E402
from musiq.serve.prometheus import Registry  # noqa: E402


class FakeTokens:
    def __init__(self, ident: int, n: int = 100) -> None:
        self.ident, self.n = ident, n

    def __len__(self) -> int:
        return self.n


class FakeScorer:
    """Returns each image's id as its logit; can block or fail on demand."""

    name = "fake"

    def __init__(self, max_batch_tokens: int = 8192) -> None:
        self.max_batch_tokens = max_batch_tokens
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def logits(self, tokens) -> np.ndarray:
        self.gate.wait(10)
        self.batches.append([t.ident for t in tokens])
        if self.fail:
            raise RuntimeError("boom")
        return np.array([[float(t.ident)] for t in tokens], np.float32)


def run_with(scorer: FakeScorer, body, **options):
    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = Batcher(scorer, pool, Registry(8), **options)
            b.start()
            try:
                return await body(b)
            finally:
                scorer.gate.set()
                await b.stop()
    return asyncio.run(main())


def test_batches_are_capped_and_rows_go_back_to_their_callers():
    scorer = FakeScorer()

    async def body(b):
        return await asyncio.gather(*(b.submit(FakeTokens(i)) for i in range(11)))

    rows = run_with(scorer, body, max_batch_size=4, max_wait_ms=50)
    assert [float(r[0]) for r in rows] == list(range(11))
    assert [len(x) for x in scorer.batches] == [4, 4, 3]
    assert sorted(i for x in scorer.batches for i in x) == list(range(11))


def test_token_budget_splits_batches_without_losing_images():
    scorer = FakeScorer(max_batch_tokens=1000)

    async def body(b):
        return await asyncio.gather(*(b.submit(FakeTokens(i, 400)) for i in range(5)))

    rows = run_with(scorer, body, max_batch_size=8, max_wait_ms=20)
    assert [float(r[0]) for r in rows] == list(range(5))
    assert [len(x) for x in scorer.batches] == [2, 2, 1]


def test_wait_window_gathers_late_arrivals_only_within_it():
    scorer = FakeScorer()

    async def body(b):
        first = asyncio.ensure_future(b.submit(FakeTokens(0)))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(b.submit(FakeTokens(1)))  # inside the 300 ms window
        await asyncio.gather(first, second)
        await b.submit(FakeTokens(2))  # alone: nobody else is waiting

    run_with(scorer, body, max_batch_size=8, max_wait_ms=300)
    assert scorer.batches == [[0, 1], [2]]


def test_cancelled_images_are_skipped_and_failures_stay_in_their_batch():
    scorer = FakeScorer()
    scorer.gate.clear()  # hold the model so images queue up behind the first

    async def body(b):
        busy = asyncio.ensure_future(b.submit(FakeTokens(0)))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(b.submit(FakeTokens(1)))
        kept = asyncio.ensure_future(b.submit(FakeTokens(2)))
        await asyncio.sleep(0.01)
        gone.cancel()  # as a timed-out request does
        scorer.gate.set()
        await busy
        assert float((await kept)[0]) == 2.0
        scorer.fail = True
        with pytest.raises(RuntimeError, match="boom"):
            await b.submit(FakeTokens(3))
        scorer.fail = False
        return await b.submit(FakeTokens(4))  # the batcher survived the failure

    row = run_with(scorer, body, max_batch_size=8, max_wait_ms=1)
    assert float(row[0]) == 4.0
    assert [1] not in scorer.batches and all(1 not in x for x in scorer.batches)


def test_stop_fails_queued_images():
    scorer = FakeScorer()
    scorer.gate.clear()

    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = Batcher(scorer, pool, Registry(8), max_batch_size=1, max_wait_ms=0)
            b.start()
            first = asyncio.ensure_future(b.submit(FakeTokens(0)))
            queued = asyncio.ensure_future(b.submit(FakeTokens(1)))
            await asyncio.sleep(0.05)
            await b.stop()
            scorer.gate.set()
            with pytest.raises(BatcherStopped):
                await queued
            first.cancel()

    asyncio.run(main())


def test_admission_is_all_or_nothing():
    a = Admission(3)
    a.acquire(2, seconds_per_image=0.5)
    with pytest.raises(QueueFull) as e:
        a.acquire(2, seconds_per_image=0.5)
    assert e.value.status_code == 503 and e.value.headers["Retry-After"] == "1"
    assert a.depth == 2
    a.acquire(1, 0.5)
    with pytest.raises(QueueFull) as e:
        a.acquire(1, seconds_per_image=10.0)
    assert e.value.headers["Retry-After"] == "30"
    a.release(3)
    assert a.depth == 0


def test_metrics_text_format():
    m = Registry(4)
    m.requests.inc(route="/v1/score", status="200")
    m.requests.inc(route="/v1/score", status="200")
    m.batch_size.observe(3)
    m.rejected.inc(reason='odd"label')
    text = m.render()
    assert 'musiq_requests_total{route="/v1/score",status="200"} 2' in text
    assert 'musiq_batch_size_bucket{le="2"} 0' in text
    assert 'musiq_batch_size_bucket{le="3"} 1' in text
    assert 'musiq_batch_size_bucket{le="+Inf"} 1' in text
    assert 'reason="odd\\"label"' in text
    assert "# TYPE musiq_batch_size histogram" in text


def test_page_files_ship_as_package_data():
    tomllib = pytest.importorskip("tomllib")
    from conftest import ROOT
    from musiq.serve.page import FILES

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["musiq.serve"]
    static = ROOT / "src" / "musiq" / "serve"
    shipped = {p.relative_to(static).as_posix() for pat in patterns for p in static.glob(pat)}
    assert {f"static/{name}" for name in FILES} <= shipped


def test_cancelled_images_leave_the_queue_at_once():
    """A timed-out request's tokens are freed when it is cancelled, not when a batch would
    have reached them (before: they stayed queued behind a slow batch, and RSS grew)."""
    scorer = FakeScorer()
    scorer.gate.clear()  # the first batch blocks the model thread

    async def body(b):
        first = asyncio.ensure_future(b.submit(FakeTokens(0)))
        await asyncio.sleep(0.05)
        waiting = [asyncio.ensure_future(b.submit(FakeTokens(i))) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        assert b.queued == 5
        for w in waiting:
            w.cancel()
        await asyncio.sleep(0)
        assert b.queued == 0
        scorer.gate.set()
        return await first

    assert run_with(scorer, body, max_batch_size=1, max_wait_ms=0)[0] == 0.0
    assert scorer.batches == [[0]]  # nothing of the cancelled requests ran


def test_stalled_forward_pass_is_reported():
    scorer = FakeScorer()
    scorer.gate.clear()

    async def body(b):
        assert b.stalled(0.1) is None
        job = asyncio.ensure_future(b.submit(FakeTokens(1)))
        await asyncio.sleep(0.3)
        why = b.stalled(0.1)
        scorer.gate.set()
        await job
        return why, b.stalled(0.1)

    why, after = run_with(scorer, body, max_wait_ms=0)
    assert why is not None and "forward pass has run for" in why
    assert after is None
