"""The producer flags the first record of a stream and the next record after a delivery failure with
GAP, and its counters account for every sampled frame: sent + failed + dropped == sampled; each
record states its edge's settings. Kafka is an in-memory fake whose sends fail as scripted."""

from __future__ import annotations

import threading

from edge_fakes import FakeCapture, FakeOpener, FakeProducer, edge_config

from vad.edge.digest import settings_digest
from vad.edge.producer import run_cameras
from vad.schema import decode


class _Deferred:
    """A send future whose outcome is reported at once, or later by the producer's ``_settle``."""

    def __init__(self, ok: bool, now: bool):
        self.ok, self.now = ok, now
        self.callbacks, self.errbacks = [], []

    def add_callback(self, fn):
        self.callbacks.append(fn)
        if self.now and self.ok:
            fn(None)
        return self

    def add_errback(self, fn):
        self.errbacks.append(fn)
        if self.now and not self.ok:
            fn(RuntimeError("scripted delivery failure"))
        return self


class ScriptedProducer(FakeProducer):
    """``fail``: 1-based send numbers whose delivery fails; ``raise_on``: those whose ``send`` raises
    (a full client buffer); ``report_after``: a delivery is reported during the ``report_after``-th
    send after it (0: before the send call returns, so before the next record is handed over)."""

    def __init__(self, fail=(), raise_on=(), report_after=0):
        super().__init__()
        self.fail, self.raise_on, self.report_after = set(fail), set(raise_on), report_after
        self.pending: list[tuple[int, bool, _Deferred]] = []

    def send(self, topic, key=None, value=None, timestamp_ms=None):
        with self._lock:
            self.records.append((topic, key, value, timestamp_ms))
            n = len(self.records)
        if n in self.raise_on:
            raise TimeoutError("scripted: buffer full past max_block_ms")
        self._settle(n)
        fut = _Deferred(n not in self.fail, now=self.report_after == 0)
        if self.report_after:
            self.pending.append((n, fut))
        return fut

    def _settle(self, n: int, everything: bool = False) -> None:
        for item in list(self.pending):
            m, fut = item
            if everything or n - m >= self.report_after:
                self.pending.remove(item)
                for fn in fut.callbacks if fut.ok else fut.errbacks:
                    fn(None if fut.ok else RuntimeError("scripted delivery failure"))

    def flush(self, timeout=None):
        self._settle(10**9, everything=True)
        super().flush(timeout)


def _run(producer, frames=20):
    cfg = edge_config()
    (w,) = run_cameras(
        cfg, [("cam-1", "clip.mp4", cfg.edge.settings_for(None))], None, producer, FakeOpener(FakeCapture([frames]))
    )
    assert w.error is None, w.error
    return w.stats, [decode(v) for *_, v, _ in producer.records]


def test_the_first_record_of_a_stream_is_flagged():
    p = FakeProducer()
    st, recs = _run(p, 8)
    assert [r.gap for r in recs] == [True] + [False] * 7 and st.gaps == 1


def test_every_record_states_the_digest_of_its_cameras_edge_settings():
    cfg = edge_config()
    own = cfg.edge.settings_for(None).model_copy(update={"flow_gate": 2.0})
    p = FakeProducer()
    (w,) = run_cameras(cfg, [("cam-1", "clip.mp4", own)], None, p, FakeOpener(FakeCapture([4])))
    assert w.error is None, w.error
    digests = {decode(v).edge_digest for *_, v, _ in p.records}
    assert digests == {settings_digest(own)} and settings_digest(own) != settings_digest(cfg.edge)


def test_the_record_after_a_failed_delivery_carries_gap_and_the_counters_add_up():
    p = ScriptedProducer(fail={4, 9, 10})
    st, recs = _run(p)
    # 5 after 4; 10 after 9, and as 10 failed too, 11 (the first delivered after the hole)
    assert [n + 1 for n, r in enumerate(recs) if r.gap] == [1, 5, 10, 11]
    assert [r.frame_index for r in recs] == list(range(20))
    assert (st.sent, st.failed, st.dropped, st.sampled) == (17, 3, 0, 20)
    assert st.sent + st.failed + st.dropped == st.sampled and st.gaps == 4


def test_a_send_that_raises_is_counted_failed_and_the_next_record_carries_gap():
    p = ScriptedProducer(raise_on={6})
    st, recs = _run(p, 10)
    assert [n + 1 for n, r in enumerate(recs) if r.gap] == [1, 7]
    assert (st.sent, st.failed) == (9, 1) and st.sent + st.failed + st.dropped == st.sampled


def test_a_failure_reported_late_flags_the_next_record_handed_over_after_the_report():
    # Records 6 and 7 went to the client before 5's failure was reported (during the send of 7):
    # they go as they are (the job cannot be told any more); the next record handed over is flagged.
    p = ScriptedProducer(fail={5}, report_after=2)
    st, recs = _run(p, 12)
    assert [n + 1 for n, r in enumerate(recs) if r.gap] == [1, 8]
    assert (st.sent, st.failed) == (11, 1)


def test_failures_reported_on_another_thread_lose_no_flag():
    # Delivery reports come from kafka-python's I/O thread while the send thread hands records over.
    p = FakeProducer(fail_every=3)
    original = p.send

    def send(*a, **kw):
        fut = original(*a, **kw)
        fut_errback = fut.add_errback

        def add_errback(fn):
            t = threading.Thread(target=fut_errback, args=(fn,))
            t.start()
            t.join(5)
            return fut

        fut.add_errback = add_errback
        return fut

    p.send = send
    st, recs = _run(p, 30)
    failed = [n for n in range(30) if (n + 1) % 3 == 0]
    assert all(recs[n + 1].gap for n in failed if n + 1 < 30)
    assert st.failed == 10 and st.sent + st.failed + st.dropped == st.sampled == 30
