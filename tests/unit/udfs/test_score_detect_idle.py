"""When the scoring operator closes an open episode as idle: only when its own camera stopped sending
(a jump in its own event time, or no record of it for idle_close_ms of processing time), never
because the watermark (another camera's time) is ahead, and also when every camera is silent and
the watermark stalls. The Flink runtime is replaced by the fakes of flink_fakes; the real runtime
runs tests/integration/test_idle_skew_and_ttl.py."""

from __future__ import annotations

import json

import numpy as np
from flink_fakes import MapState, Timers, ValueState
from pyflink.common import Row
from pyflink.datastream import TimeDomain

from udfs.batches import pack_batch
from udfs.score_detect import END_OF_INPUT, EVENTS, IDLE_TICK_MS, ScoreAndDetect
from vad.config import REPO_ROOT, DetectConfig
from vad.records import Event
from vad.schema import N_CHANNELS, FrameFeatures

MODEL = str(REPO_ROOT / "models" / "default" / "model.onnx")
IDLE_MS = 5000
T0 = 1_800_000_000_000
WALL0 = 1_700_000_000_000


class _Runtime:
    def __init__(self, cameras: MapState | None = None):
        self.map = cameras if cameras is not None else MapState()

    def get_state(self, _d):
        return ValueState()

    def get_map_state(self, _d):
        return self.map

    def get_metrics_group(self):
        return None


class _Ctx:
    def __init__(self, clock: list[int], domain=TimeDomain.EVENT_TIME):
        self.timers, self.domain = Timers(clock), domain

    def get_current_key(self):
        return 3

    def timer_service(self):
        return self.timers

    def time_domain(self):
        return self.domain


class _Harness:
    """One operator with a processing-time clock the test moves, and every timer it registered."""

    def __init__(self, cameras: MapState | None = None, wall: int = WALL0):
        cfg = DetectConfig(merge_gap_s=0, threshold=1.0, ema_alpha=1.0, min_duration_s=0, update_every_s=100)
        self.op = ScoreAndDetect(MODEL, cfg, IDLE_MS, 3600, emit_scores=False)
        self.map = cameras if cameras is not None else MapState()
        self.op.open(_Runtime(self.map))
        self.clock = [wall]
        self.processing: list[int] = []
        self.event_timers: list[int] = []

    def _ctx(self, domain=TimeDomain.EVENT_TIME) -> _Ctx:
        return _Ctx(self.clock, domain)

    def _collect(self, out, ctx) -> list[dict]:
        self.processing += ctx.timers.processing
        self.event_timers += ctx.timers.event
        kafka = [v for t, v in (o for o in out if isinstance(o, tuple)) if t is EVENTS]
        assert [o[1] for o in out if isinstance(o, Row)] == kafka
        lines = [line for v in kafka for line in v.split("\n")]
        assert all(Event.parse(line).to_json() == line for line in lines)
        return [json.loads(line) for line in lines]

    def batch(self, records: list[bytes]) -> list[dict]:
        ctx = self._ctx()
        return self._collect(list(self.op.process_element(pack_batch(records), ctx)), ctx)

    def timer(self, t: int, domain=TimeDomain.PROCESSING_TIME) -> list[dict]:
        ctx = self._ctx(domain)
        return self._collect(list(self.op.on_timer(t, ctx)), ctx)

    def due_timers(self) -> list[dict]:
        """Fires the processing-time timers due at the clock, as Flink does."""
        due = sorted(t for t in self.processing if t <= self.clock[0])
        self.processing = [t for t in self.processing if t > self.clock[0]]
        return [e for t in due for e in self.timer(t)]


def rec(cam: str, i: int, ts: int, value: float = 50.0) -> bytes:
    return FrameFeatures(cam, i, ts, 360, 240, np.full((12, 18, N_CHANNELS), value, np.float32)).encode()


def phases(events: list[dict]) -> list[tuple]:
    return [(e["camera_id"], e["phase"], e.get("close_reason"), e["end_frame"]) for e in events]


def test_a_camera_behind_the_watermark_is_not_closed_while_it_streams():
    # "behind" trails "ahead" by a minute of event time on one partition: the watermark (ahead's
    # time) is far past behind's last frame + IDLE_MS all along, and behind keeps streaming.
    h, events = _Harness(), []
    for i in range(100):  # 10 s of frames, 100 ms apart in event and processing time
        events += h.batch([rec("ahead", i, T0 + 60_000 + 100 * i, 0.0), rec("behind", i, T0 + 100 * i)])
        events += h.timer(T0 + 60_000 + 100 * i, TimeDomain.EVENT_TIME)  # the watermark's timers, if any
        h.clock[0] += 100
        events += h.due_timers()
    assert phases(events) == [("behind", "open", None, 0)]
    # It stops: closed once silent for IDLE_MS of processing time, with its own last frame and time.
    h.clock[0] += IDLE_MS + IDLE_TICK_MS
    closed = h.due_timers()
    assert phases(closed) == [("behind", "close", "idle", 99)] and closed[0]["ts_ms"] == T0 + 9900


def test_every_camera_silent_closes_by_processing_time_with_the_watermark_stalled():
    h = _Harness()
    opened = h.batch([rec("a", i, T0 + 100 * i) for i in range(5)])
    assert phases(opened) == [("a", "open", None, 0)]
    last_arrival = h.clock[0]
    # One pending silence check per shard, however many batches: not one timer per batch.
    for i in range(5, 15):
        h.clock[0] += 100
        h.batch([rec("a", i, T0 + 100 * i)])
        last_arrival = h.clock[0]
    assert len(h.processing) == 1 and h.event_timers == [END_OF_INPUT]
    events, closed_at = [], None
    for _ in range(20):  # no record and no watermark for 20 s; the check re-arms until silence
        h.clock[0] += 500
        events += h.due_timers()
        closed_at = closed_at or (h.clock[0] if events else None)
    assert phases(events) == [("a", "close", "idle", 14)] and events[0]["ts_ms"] == T0 + 1400
    # Within a tick of the idle timeout after the last record arrived (the state TTL is at least
    # 30 s more: test_config), and no check is left armed.
    assert IDLE_MS <= closed_at - last_arrival <= IDLE_MS + IDLE_TICK_MS + 500
    assert h.processing == []


def test_a_jump_in_the_cameras_own_event_time_closes_alike_live_and_in_a_replay():
    frames = [rec("a", i, T0 + 100 * i) for i in range(5)] + [rec("a", i, T0 + 20_000 + 100 * i) for i in range(5, 9)]
    # Live: the camera is silent 20 s in wall time too; the silence check closes it.
    live, live_events = _Harness(), []
    live_events += live.batch(frames[:5])
    for _ in range(20):
        live.clock[0] += 1000
        live_events += live.due_timers()
    live_events += live.batch(frames[5:])
    # Replay: every frame in one burst, no wall time between: the jump itself closes it.
    replay = _Harness()
    replay_events = replay.batch(frames)
    assert phases(replay_events) == [("a", "open", None, 0), ("a", "close", "idle", 4), ("a", "open", None, 5)]
    assert replay_events == live_events


def test_a_restored_silence_check_waits_for_records_still_in_kafka():
    h = _Harness()
    h.batch([rec("a", i, T0 + 100 * i) for i in range(5)])
    pending = h.processing[0]
    # A restart an hour later: the state and the timer are restored, the timer is long overdue.
    restored = _Harness(cameras=MapState(h.map), wall=pending + 3_600_000)
    assert restored.timer(pending) == []
    assert restored.processing, "the check is armed again"
    # The backlog arrives within the idle timeout: the episode goes on; silence then closes it.
    restored.clock[0] += 2000
    assert restored.due_timers() == []
    assert restored.batch([rec("a", i, T0 + 100 * i) for i in range(5, 10)]) == []
    restored.clock[0] += IDLE_MS + IDLE_TICK_MS
    assert phases(restored.due_timers()) == [("a", "close", "idle", 9)]


def test_the_end_of_a_bounded_input_closes_every_open_episode():
    h = _Harness()
    h.batch([rec("a", 0, T0), rec("b", 0, T0 + 50)])
    assert h.event_timers == [END_OF_INPUT]
    closed = h.timer(END_OF_INPUT, TimeDomain.EVENT_TIME)
    assert sorted(phases(closed)) == [("a", "close", "idle", 0), ("b", "close", "idle", 0)]


def test_an_event_time_timer_of_an_older_job_arms_the_silence_check():
    h = _Harness()
    h.batch([rec("a", 0, T0)])
    fresh = _Harness(cameras=MapState(h.map))  # restored from a savepoint with the old idle timer only
    assert fresh.timer(T0 + IDLE_MS, TimeDomain.EVENT_TIME) == []
    fresh.clock[0] += IDLE_MS + IDLE_TICK_MS
    assert phases(fresh.due_timers()) == [("a", "close", "idle", 0)]
