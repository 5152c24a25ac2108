"""The events store against a real Redis: the write script is sent by its SHA, loaded when the
server does not have it (a new server, or after SCRIPT FLUSH), and a replay writes nothing twice."""

from __future__ import annotations

import json

from vad.config import load_config
from vad.redis_store import RedisEventStore


def _event(seq: int, phase: str) -> tuple[dict, str]:
    e = {"camera_id": "rs-cam", "event_id": "rs-cam-000042", "seq": seq, "phase": phase, "ts_ms": 1_800_000_000_000}
    return e, json.dumps(e)


def test_writes_load_the_script_when_missing_and_replays_are_skipped(stack_env):
    cfg = load_config(env={**stack_env, "VAD_REDIS__KEY_PREFIX": "rs"})
    store = RedisEventStore(cfg.redis)
    try:
        store.r.script_flush()
        assert store.write_events([_event(0, "open"), _event(1, "update")]) == [True, True]
        # The script is there now: a replay of the same events is skipped, a new one written.
        assert store.write_events([_event(1, "update"), _event(2, "close")]) == [False, True]
        store.r.script_flush()  # e.g. a Redis restart without persistence of the script cache
        assert store.write_events([_event(2, "close")]) == [False]
        assert [json.loads(x)["seq"] for x in store.events("rs-cam")] == [0, 1, 2]
        assert store.camera_state("rs-cam")["state"] == "normal"
    finally:
        store.close()
