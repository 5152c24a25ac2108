"""The review page's pure logic: ids and cursors it accepts, rows it shows, how it follows the streams
(against a fake Redis: the real one is tests/integration/test_review_page.py)."""

from __future__ import annotations

import json

import pytest

from vad.config import load_config
from vad.ui import feed as f
from vad.ui.app import _kind, _limit, snapshot_file


def test_event_ids_are_32_lowercase_hex_digits():
    assert f.check_event_id("0123456789abcdef" * 2) == "0123456789abcdef" * 2
    for bad in ("", "A" * 32, "a" * 31, "a" * 33, "../" + "a" * 29, "a" * 31 + "\n", None):
        with pytest.raises(f.BadRequest, match="event id"):
            f.check_event_id(bad)


def test_cameras_must_be_legal_ids():
    assert f.check_camera("site/gate-3") == "site/gate-3"
    for bad in ("", "a b", "a/../b", "x{y}", "a,b"):
        with pytest.raises(f.BadRequest, match="camera"):
            f.check_camera(bad)


def test_cursor_round_trips_and_a_bad_one_is_refused_whole():
    cur = {"site/gate-3": "1700000000000-0", "cam:1": "0-0", "b.c_d": "17-12"}
    text = f.encode_cursor(cur)
    assert f.decode_cursor(text) == cur
    assert f.decode_cursor(None) == {} == f.decode_cursor("")
    for bad in ("cam=1700", "cam", "=1-0", "a b=1-0", "cam=1-0,x=y", "cam=-1-0"):
        with pytest.raises(f.BadRequest, match="cursor"):
            f.decode_cursor(bad)


def _event(eid="a" * 32, seq=1, phase="open", cam="cam-1", ts=2000, **extra) -> dict:
    return {
        "event_id": eid,
        "camera_id": cam,
        "phase": phase,
        "seq": seq,
        "start_ts_ms": 1000,
        "ts_ms": ts,
        "peak_score": 0.5,
        "heatmap": [[0.1, 0.2]],
        "model_version": "m",
        **extra,
    }


def test_row_defaults_the_kind_to_motion_and_computes_the_duration():
    r = f.row(_event(), "5-0")
    assert r["kind"] == "motion" and r["duration_ms"] == 1000 and r["entry_id"] == "5-0"
    assert r["heatmap"] == [[0.1, 0.2]]
    assert f.row(_event(kind="loitering"))["kind"] == "loitering"
    assert f.row({**_event(), "ts_ms": None})["duration_ms"] is None


def test_one_row_per_episode_the_highest_seq_newest_first():
    rows = [
        f.row(_event("a" * 32, 1, "open", ts=2000)),
        f.row(_event("a" * 32, 3, "close", ts=4000)),
        f.row(_event("a" * 32, 2, "update", ts=3000)),
        f.row(_event("b" * 32, 1, "open", ts=5000)),
    ]
    got = f.latest_per_episode(rows)
    assert [(r["event_id"][0], r["seq"]) for r in got] == [("b", 1), ("a", 3)]


def test_filters_by_camera_and_kind():
    r = f.row(_event(cam="x/y", kind="loitering"))
    assert f.matches(r, None, None) and f.matches(r, "x/y", "loitering")
    assert not f.matches(r, "x/z", None) and not f.matches(r, None, "motion")


def test_an_entry_that_is_not_an_event_is_skipped():
    assert f.parse_entry({"event": json.dumps(_event())})["seq"] == 1
    for fields in ({}, {"event": "{"}, {"event": "[]"}, {"event": json.dumps({**_event(), "event_id": "zz"})}):
        assert f.parse_entry(fields) is None


def test_limit_and_kind_parameters():
    assert _limit(None, 200, 5000) == 200 and _limit("", 200, 5000) == 200 and _limit("7", 200, 5000) == 7
    for bad in ("0", "5001", "-1", "1.5", "x"):
        with pytest.raises(f.BadRequest, match="limit"):
            _limit(bad, 200, 5000)
    assert _kind("") is None and _kind("loitering") == "loitering"
    with pytest.raises(f.BadRequest, match="kind"):
        _kind("a;b")


def test_a_snapshot_only_where_the_camera_allows_it(tmp_path):
    img = tmp_path / "bg.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n")
    env = {
        "VAD_CAMERAS__A__SNAPSHOT_PATH": str(img),
        "VAD_CAMERAS__A__SNAPSHOT_ALLOWED": "true",
        "VAD_CAMERAS__B__SNAPSHOT_PATH": str(img),
        "VAD_CAMERAS__C__SNAPSHOT_PATH": str(tmp_path / "missing.png"),
        "VAD_CAMERAS__C__SNAPSHOT_ALLOWED": "true",
    }
    cfg = load_config(env=env)
    assert snapshot_file(cfg, "a") == img
    assert snapshot_file(cfg, "b") is None  # named, not allowed (the default)
    assert snapshot_file(cfg, "c") is None  # allowed, no such file
    assert snapshot_file(cfg, "unlisted") is None


class _Pipe:
    def __init__(self, r):
        self.r, self.calls = r, []

    def get(self, key):
        self.calls.append(self.r.acks.get(key))

    def execute(self):
        return self.calls


class FakeRedis:
    """The calls Feed.follow makes: ZCARD of the recent index, SCAN for cameras, XREAD, GETs of acks."""

    def __init__(self):
        self.recent, self.scans, self.acks = 0, 0, {}
        self.streams: dict[str, list[tuple[str, dict]]] = {}
        self.xreads: list[dict] = []

    def zcard(self, key):
        return self.recent

    def scan_iter(self, match, count):
        self.scans += 1
        return [k.replace(":events", ":state") for k in self.streams]

    def xread(self, streams, count, block):
        self.xreads.append(dict(streams))
        out = []
        for key, after in streams.items():
            new = [(i, fl) for i, fl in self.streams.get(key, []) if tuple(map(int, i.split("-"))) > _sid(after)]
            if new:
                out.append((key, new))
        return out

    def pipeline(self, transaction=False):
        return _Pipe(self)

    def close(self):
        pass


def _sid(text: str) -> tuple[int, int]:
    return tuple(map(int, text.split("-")))  # type: ignore[return-value]


@pytest.fixture
def fake():
    cfg = load_config(env={"VAD_REDIS__KEY_PREFIX": "t"})
    feed = f.Feed(cfg.redis, block_ms=10)
    r = FakeRedis()
    feed.r = feed.store.r = r
    yield feed, r
    feed.close()


def test_follow_finds_a_new_camera_when_the_recent_index_grows_not_only_every_scan(fake):
    feed, r = fake
    key_a = feed.store.stream_key("cam-a")
    r.streams[key_a] = [("1-0", {"event": json.dumps(_event(cam="cam-a"))})]
    r.recent = 1
    follow = f.Follow({})
    got = feed.follow(follow, block_ms=10, scan_s=3600)
    assert [x["camera_id"] for x in got] == ["cam-a"]
    assert got[0]["cursor"] == "cam-a=1-0" and got[0]["acked"] is None
    scans = r.scans
    # Nothing new anywhere: no scan (scan_s is an hour).
    assert feed.follow(follow, 10, 3600) == [] and r.scans == scans
    # A second camera's first episode grows the index: found by the next call, from its stream's start.
    key_b = feed.store.stream_key("cam/b")
    r.streams[key_b] = [("2-0", {"event": json.dumps(_event("b" * 32, cam="cam/b"))})]
    r.recent = 2
    got = feed.follow(follow, 10, 3600)
    assert r.scans == scans + 1
    assert [x["camera_id"] for x in got] == ["cam/b"]
    assert f.decode_cursor(got[0]["cursor"]) == {"cam-a": "1-0", "cam/b": "2-0"}
    assert r.xreads[-1] == {key_a: "1-0", key_b: "0-0"}


def test_follow_resumes_from_a_cursor_and_skips_entries_that_are_not_events(fake):
    feed, r = fake
    key = feed.store.stream_key("cam-a")
    r.streams[key] = [
        ("1-0", {"event": json.dumps(_event(seq=1))}),
        ("2-0", {"event": "garbage"}),
        ("3-0", {"event": json.dumps(_event(seq=2, phase="close"))}),
    ]
    r.recent = 1
    r.acks[f"t:ack:{'a' * 32}"] = json.dumps({"ts_ms": 5})
    got = feed.follow(f.Follow(f.decode_cursor("cam-a=1-0")), 10, 3600)
    assert [(x["seq"], x["cursor"], x["acked"]) for x in got] == [(2, "cam-a=3-0", {"ts_ms": 5})]


@pytest.mark.parametrize(
    ("env", "path"),
    [
        ({"VAD_UI__STREAM_BLOCK_MS": "10"}, "ui.stream_block_ms"),
        ({"VAD_UI__PORT": "70000"}, "ui.port"),
        ({"VAD_CAMERAS__A__SNAPSHOT_ALLOWED": "maybe"}, "cameras.a.snapshot_allowed"),
    ],
)
def test_bad_ui_settings_are_refused_naming_the_field(env, path):
    from vad.config import ConfigError

    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        load_config(env=env)


def test_ui_defaults_bind_loopback_and_snapshots_are_off():
    cfg = load_config(env={"VAD_CAMERAS__A__SOURCE": "x.mp4"})
    assert cfg.ui.host == "127.0.0.1"
    assert cfg.cameras["a"].snapshot_allowed is False and cfg.cameras["a"].snapshot_path is None
