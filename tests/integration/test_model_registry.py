"""A model per camera view, swapped while the job runs, on the real stack: camera "reg-door" is
scored with view "lobby" of a registry folder, "reg-hall" with the default model. A new version of
the view published mid-episode takes over without a restart: the open episode keeps its id, and
its later events name the new version. Records are written straight to Kafka."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from kafka import KafkaProducer
from synthetic_grids import grid_features

from models.registry import publish
from vad.config import REPO_ROOT, load_config
from vad.consumer import read_kafka_events
from vad.kafka_clients import ensure_topics
from vad.schema import FLAG_GAP, FrameFeatures

CALM, HOT = grid_features(False), grid_features(True)
DEFAULT = REPO_ROOT / "models" / "default"
DOOR, HALL = "reg-door", "reg-hall"


def _send(p, cfg, cam: str, frames: range, t0: int, feats) -> None:
    for i in frames:
        ts = t0 + 100 * i
        value = FrameFeatures(cam, i, ts, 360, 240, feats, FLAG_GAP if i == 0 else 0).encode("float16")
        p.send(cfg.kafka.topics.features, key=cam.encode(), value=value, timestamp_ms=ts)
    p.flush(timeout=30)


def _until(cfg, job, jobs, done, timeout_s: float = 300):
    deadline, events = time.monotonic() + timeout_s, []
    while time.monotonic() < deadline:
        assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
        events = read_kafka_events(cfg, timeout_s=2)
        if done(events):
            return events
        time.sleep(1)
    return events


def test_a_view_is_scored_with_its_newest_version_swapped_mid_episode(job_env, jobs, tmp_path):
    reg = tmp_path / "registry"
    publish(DEFAULT, reg, "lobby", "1")
    env = job_env(
        "registry",
        VAD_JOB__MODEL_REGISTRY=str(reg),
        VAD_JOB__MODEL_REFRESH_S="1",
        VAD_JOB__IDLE_TIMEOUT_MS="600000",
        VAD_DETECT__UPDATE_EVERY_S="0.5",
        VAD_CAMERAS=json.dumps({DOOR: {"view": "lobby"}}),
    )
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    default_version = json.loads((DEFAULT / "card.json").read_text())["model_version"]
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers, linger_ms=5)
    t0 = int(time.time() * 1000)
    job = jobs.start(env)
    try:
        _send(p, cfg, DOOR, range(0, 30), t0, HOT)
        _send(p, cfg, HALL, range(0, 30), t0, HOT)
        opened = lambda evs: {e.camera_id for e in evs if e.phase == "open"} >= {DOOR, HALL}  # noqa: E731
        before = _until(cfg, job, jobs, opened)
        publish(DEFAULT, reg, "lobby", "2")
        time.sleep(3)  # past the refresh interval: the next batch looks again
        _send(p, cfg, DOOR, range(30, 60), t0, HOT)
        _send(p, cfg, DOOR, range(60, 120), t0, CALM)
        closed = lambda evs: any(e.camera_id == DOOR and e.phase == "close" for e in evs)  # noqa: E731
        events = _until(cfg, job, jobs, closed)
    finally:
        jobs.kill(job)
        p.close(timeout=10)
    door = [e for e in events if e.camera_id == DOOR]
    summary = [(e.phase, e.seq, e.model_version, e.event_id[:6]) for e in door]
    opens = [e for e in door if e.phase == "open"]
    assert len(opens) == 1 and opens[0].model_version == "lobby/1", summary
    assert {e.model_version for e in before if e.camera_id == HALL} == {default_version}
    close = [e for e in door if e.phase == "close"]
    assert len(close) == 1 and close[0].event_id == opens[0].event_id, summary
    assert close[0].model_version == "lobby/2", summary


def test_train_from_kafka_then_publish_without_raw_video(job_env, produce, ped2, tmp_path):
    """`vad train --from-kafka`: a view fitted on a camera's records in the features topic (what its
    edge sent), published to the registry; a camera whose records are not there is refused."""
    env = {**job_env("fromkafka"), "VAD_JOB__MODEL_REGISTRY": str(tmp_path / "registry")}
    cfg = load_config(env=env)
    ensure_topics(cfg.kafka)
    # Two producer streams of one camera (two normal clips), and another camera the fit must skip.
    sent = produce(env, {"fk-cam": ped2 / "train" / "Train001.mp4", "fk-other": ped2 / "train" / "Train003.mp4"})
    sent["fk-cam"] += produce(env, {"fk-cam": ped2 / "train" / "Train002.mp4"})["fk-cam"]
    # A stream of the camera from an edge with other feature settings: its records state them, and
    # the fit, whose card records this configuration's settings, must leave them out.
    other = produce({**env, "VAD_EDGE__FLOW_GATE": "2"}, {"fk-cam": ped2 / "train" / "Train004.mp4"})["fk-cam"]
    out = tmp_path / "model"
    argv = [sys.executable, "-m", "vadctl.cli", "train", "--from-kafka", "--camera", "fk-cam", "--since", "1h"]
    run = subprocess.run(
        [*argv, "--out", str(out)], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    card = json.loads((out / "card.json").read_text())
    assert card["training_data"]["folder"] == f"kafka:{cfg.kafka.topics.features}/fk-cam"
    assert card["training_data"]["frames"] == sent["fk-cam"] and card["training_data"]["clips"] >= 2
    assert card["training_data"]["frame_size"] == [360, 240]  # from the records' headers
    assert f"{other} of other edge settings" in run.stderr
    pub = [sys.executable, "-m", "vadctl.cli", "publish", "--model", str(out), "--view", "fk", "--version", "1"]
    done = subprocess.run(pub, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["view"] == "fk"
    assert (tmp_path / "registry" / "fk" / "1" / "model.onnx").is_file()
    missing = subprocess.run(
        [*argv[:6], "nobody", "--since", "1h", "--out", str(tmp_path / "none")],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode != 0 and "no usable records of camera 'nobody'" in missing.stderr
    # A trainer configured otherwise than the camera's edge learns nothing, and says why.
    mismatched = subprocess.run(
        [*argv[:6], "fk-other", "--since", "1h", "--out", str(tmp_path / "other")],
        env={**env, "VAD_EDGE__FLOW_GATE": "3"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert mismatched.returncode != 0 and "computed with other edge settings" in mismatched.stderr
    assert "flow_gate=3.0" in mismatched.stderr
