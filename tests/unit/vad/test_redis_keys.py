"""The Redis key layout, without a server (the client connects on its first command): no legal camera
id gives keys another camera's or a global key has, and an illegal id gets no key at all. Writes and
reads against a real Redis: tests/integration/test_redis_store.py."""

from __future__ import annotations

import pytest
from test_schema import ILLEGAL_CAMERA_IDS, LEGAL_CAMERA_IDS

from vad.config import load_config
from vad.detect import event_id
from vad.records import Event
from vad.redis_store import EventKeys, RedisEventStore
from vad.schema import SchemaError


@pytest.fixture
def store():
    s = RedisEventStore(load_config(env={"VAD_REDIS__PORT": "1"}).redis)
    yield s
    s.close()


def _event(camera: str) -> Event:
    return Event(
        event_id=event_id("c", 1_800_000_000_000, 1),
        camera_id=camera,
        phase="open",
        seq=1,
        start_frame=1,
        end_frame=1,
        start_ts_ms=1_800_000_000_000,
        ts_ms=1_800_000_000_000,
        peak_score=2.0,
        peak_frame=1,
        threshold=1.0,
        heatmap=[],
        model_version="test",
    )


def test_no_camera_key_is_another_cameras_or_a_global_key(store):
    cams = {*LEGAL_CAMERA_IDS, "events", "written", "cam", "state", "a:state", "x/y"}
    keys = [k for c in cams for k in (store.stream_key(c), store.camera_key(c))]
    globals_ = [store.recent_key, store.dedup_key(event_id("c", 1_800_000_000_000, 1), 1)]
    assert len(set(keys)) == len(keys) == 2 * len(cams)
    assert not set(keys) & set(globals_)
    assert store.stream_key("recent") == "vad:cam:{recent}:events" and store.recent_key == "vad:recent"


@pytest.mark.parametrize("camera_id", ILLEGAL_CAMERA_IDS)
def test_an_illegal_camera_id_gets_no_key(store, camera_id):
    for build in (store.stream_key, store.camera_key, store.events, store.camera_state):
        with pytest.raises(SchemaError) as e:
            build(camera_id)
        assert e.value.reason == "bad_camera_id"


def test_a_batch_with_an_illegal_camera_id_is_refused_before_anything_is_sent(store):
    # Port 1: a command sent would fail with a connection error, not the id's SchemaError.
    with pytest.raises(SchemaError, match="bad_camera_id"):
        store.write_events([(_event("ok"), "{}"), (_event("a/../x"), "{}")])


@pytest.mark.parametrize("camera_id", LEGAL_CAMERA_IDS)
def test_the_keys_read_from_an_events_json_are_the_events_own(store, camera_id):
    # The job's writer reads only these fields of each line: they must give the Event's keys and args.
    close = _event(camera_id).model_copy(update={"phase": "close", "seq": 7, "close_reason": "idle"})
    for e in (_event(camera_id), close):
        raw = e.to_json()
        keys = EventKeys.parse(raw)
        assert store._keys(keys) == store._keys(e) and store._args(keys, raw) == store._args(e, raw)
