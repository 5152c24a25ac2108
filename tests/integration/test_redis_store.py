"""The events store against a real Redis: the write script is sent by its SHA, loaded when the
server does not have it (a new server, or after SCRIPT FLUSH), and a replay writes nothing twice."""

from __future__ import annotations

from vad.config import load_config
from vad.detect import event_id
from vad.records import Event
from vad.redis_store import RedisEventStore


def _event(seq: int, phase: str) -> tuple[Event, str]:
    e = Event(
        event_id=event_id("rs-cam", 42),
        camera_id="rs-cam",
        phase=phase,
        seq=seq,
        start_frame=42,
        end_frame=42 + seq,
        start_ts_ms=1_800_000_000_000,
        ts_ms=1_800_000_000_000 + seq,
        peak_score=2.5,
        peak_frame=42,
        threshold=1.0,
        heatmap=[],
        model_version="test",
        close_reason="score" if phase == "close" else None,
    )
    return e, e.to_json()


def test_writes_load_the_script_when_missing_and_replays_are_skipped(stack_env):
    cfg = load_config(env={**stack_env, "VAD_REDIS__KEY_PREFIX": "rs"})
    store = RedisEventStore(cfg.redis)
    try:
        store.r.script_flush()
        assert store.write_events([_event(1, "open"), _event(2, "update")]) == [True, True]
        # The script is there now: a replay of the same events is skipped, a new one written.
        assert store.write_events([_event(2, "update"), _event(3, "close")]) == [False, True]
        store.r.script_flush()  # e.g. a Redis restart without persistence of the script cache
        assert store.write_events([_event(3, "close")]) == [False]
        assert [Event.parse(x).seq for x in store.events("rs-cam")] == [1, 2, 3]
        assert store.camera_state("rs-cam")["state"] == "normal"
    finally:
        store.close()
