"""The events store against a real Redis: the write script is sent by its SHA, loaded when the
server does not have it (a new server, or after SCRIPT FLUSH), and a replay writes nothing twice; no
camera id can make its keys another camera's or a global key; a write that fails leaves nothing
behind, its dedup mark included, so the replay writes it."""

from __future__ import annotations

import pytest
import redis

from vad.config import load_config
from vad.consumer import read_redis_events
from vad.detect import event_id
from vad.records import Event
from vad.redis_store import RedisEventStore


def _event(seq: int, phase: str, camera: str = "rs-cam") -> tuple[Event, str]:
    e = Event(
        event_id=event_id(camera, 1_800_000_000_000, 42),
        camera_id=camera,
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


def _cfg(stack_env, prefix: str):
    return load_config(env={**stack_env, "VAD_REDIS__KEY_PREFIX": prefix})


def _store(stack_env, prefix: str) -> RedisEventStore:
    store = RedisEventStore(_cfg(stack_env, prefix).redis)
    for key in store.r.scan_iter(match=f"{prefix}:*"):
        store.r.delete(key)
    return store


# Ids that spell other keys of the layout, or the way they are joined.
LOOKALIKES = ["recent", "events", "a:events", "x:recent", "a", "a:events:recent", "cam", "written", "cam/events"]


def test_camera_ids_that_look_like_other_keys_write_and_read_back(stack_env):
    store = _store(stack_env, "rs-ids")
    try:
        for cam in LOOKALIKES:
            assert store.write_events([_event(1, "open", cam), _event(2, "close", cam)]) == [True, True]
        # A key of a camera's shape that is not a legal camera's is not read as one.
        store.r.hset("rs-ids:cam:{a/../x}:state", "state", "normal")
        assert store.cameras() == sorted(LOOKALIKES)
        for cam in LOOKALIKES:
            got = [Event.parse(x) for x in store.events(cam)]
            assert [(e.camera_id, e.seq) for e in got] == [(cam, 1), (cam, 2)]
            assert store.camera_state(cam)["state"] == "normal"
        assert store.r.zcard(store.recent_key) == len(LOOKALIKES)
        assert sorted(e.camera_id for e in read_redis_events(_cfg(stack_env, "rs-ids"))) == sorted(LOOKALIKES * 2)
    finally:
        store.close()


@pytest.mark.parametrize("obstacle", ["stream", "state", "recent"])
def test_a_write_that_fails_leaves_no_dedup_mark_and_a_retry_writes_the_event(stack_env, obstacle):
    """A key of the wrong type where the event goes (WRONGTYPE) fails the write: nothing of the event
    may be left, the dedup mark least of all, or the replay after the job's restart would skip it."""
    store = _store(stack_env, "rs-fail")
    try:
        ok, bad = _event(1, "open", "fail-ok"), _event(1, "open", "fail-cam")
        key = {"stream": store.stream_key, "state": store.camera_key}.get(obstacle, lambda _c: store.recent_key)
        in_the_way = key("fail-cam")
        store.r.set(in_the_way, "not a stream, hash or sorted set")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            store.write_events([bad])
        assert set(store.r.scan_iter(match="rs-fail:*")) == {in_the_way}, "a failed write left keys behind"
        store.r.delete(in_the_way)
        # The replay of the batch: the event that failed is written, once.
        assert store.write_events([ok, bad]) == [True, True]
        assert store.write_events([ok, bad]) == [False, False]
        assert [Event.parse(x).event_id for x in store.events("fail-cam")] == [bad[0].event_id]
        assert store.camera_state("fail-cam")["last_event_id"] == bad[0].event_id
        assert store.r.zscore(store.recent_key, bad[0].event_id) == bad[0].ts_ms
    finally:
        store.close()


def test_one_failed_event_in_a_batch_fails_only_itself(stack_env):
    """The batch is a pipeline, not a transaction: the events around a failed one are written, and a
    retry of the whole batch writes only the one that failed."""
    store = _store(stack_env, "rs-batch")
    try:
        batch = [_event(1, "open", c) for c in ("b-1", "b-2", "b-3")]
        store.r.set(store.stream_key("b-2"), "in the way")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            store.write_events(batch)
        assert store.cameras() == ["b-1", "b-3"]
        store.r.delete(store.stream_key("b-2"))
        assert store.write_events(batch) == [False, True, False]
        assert [len(store.events(c)) for c in ("b-1", "b-2", "b-3")] == [1, 1, 1]
    finally:
        store.close()
