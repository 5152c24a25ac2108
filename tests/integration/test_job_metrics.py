"""The operators' metrics reach Flink's metric system from the Python worker, read from the local
cluster's REST API (`job.local_rest_port`) while the job runs: records in, windows scored, batches
and their sizes, events opened, written to Redis. They travel with each bundle's results, through
the step scopes of Beam's state sampler, which the job runs without its sampling thread
(udfs/beam_sampler.py).

The same run reports through Flink's Prometheus reporter (its push-gateway flavour, which pushes to
a loopback receiver here instead of listening on every interface): every series the alert rules and
the Grafana dashboards in k8s/ select is among the names it exports, with the labels they group by."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kafka import KafkaProducer
from synthetic_grids import grid_features

from vad.config import load_config
from vad.kafka_clients import ensure_topics
from vad.schema import FrameFeatures

CAMERA = "metrics-cam"
DRIFT_CAMERA, DRIFT_FRAMES = "metrics-drift", 2304
MISSET_CAMERA = "metrics-misset"
CALM = grid_features(False)
REPO = Path(__file__).resolve().parents[2]
MONITORING = [REPO / "k8s" / "base" / "monitoring.yaml", *sorted((REPO / "k8s" / "base" / "grafana").glob("*.json"))]
SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s", re.M)


class PushReceiver:
    """The HTTP end of a Prometheus push gateway on loopback: keeps the newest body of each push."""

    def __init__(self):
        pushed = self.pushed = {}

        class Handler(BaseHTTPRequestHandler):
            def _store(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                pushed[self.path] = body.decode("utf-8", "replace")
                self.send_response(202)
                self.end_headers()

            do_PUT = do_POST = _store

            def do_DELETE(self):
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def samples(self) -> dict[str, set[str]]:
        """Every pushed series name with the label names it carries."""
        out: dict[str, set[str]] = {}
        for body in list(self.pushed.values()):
            for name, labels in SAMPLE.findall(body):
                out.setdefault(name, set()).update(re.findall(r'(\w+)="', labels or ""))
        return out

    def value(self, name: str, camera: str) -> float | None:
        """The newest pushed value of ``name`` for ``camera`` (the first such sample), else None."""
        for body in list(self.pushed.values()):
            m = re.search(rf'^{name}{{[^}}]*camera="{re.escape(camera)}"[^}}]*}} (\S+)$', body, re.M)
            if m:
                return float(m.group(1))
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def flink_settings(self) -> str:
        pre = "metrics.reporter.pgw."
        return json.dumps(
            {
                pre + "factory.class": "org.apache.flink.metrics.prometheus.PrometheusPushGatewayReporterFactory",
                pre + "hostUrl": self.url,
                pre + "jobName": "vad-test",
                pre + "interval": "1 s",
                pre + "deleteOnShutdown": "false",
                # As k8s/base/flinkdeployment.yaml: camera ids keep their characters in the labels.
                pre + "filterLabelValueCharacters": "false",
            }
        )


def selected_series() -> tuple[set[str], set[str]]:
    """(the Flink series names the rules and dashboards select by name, the regexes they match
    names with), from k8s/."""
    names, patterns = set(), set()
    for path in MONITORING:
        text = re.sub(r"(?m)^\s*#.*$", "", path.read_text()).replace('\\"', '"')  # YAML comments: prose
        patterns |= set(re.findall(r'__name__=~"(flink_[^"]+)"', text))
        text = re.sub(r'__name__=~"flink_[^"]+"', "", text)
        names |= set(re.findall(r"\bflink_\w+", text))
    return names, patterns


def _vad_metrics(rest) -> dict[str, str]:
    """Every `vad` metric of the running job, by name without its subtask and operator prefix."""
    out = {}
    for job in rest.get("/jobs")["jobs"]:
        if job["status"] != "RUNNING":
            continue
        for v in rest.get(f"/jobs/{job['id']}")["vertices"]:
            path = f"/jobs/{job['id']}/vertices/{v['id']}/metrics"
            names = [m["id"] for m in rest.get(path) if ".vad." in m["id"]]
            if names:
                for m in rest.get(f"{path}?get={','.join(names)}"):
                    out[m["id"].split(".vad.", 1)[1]] = m["value"]
    return out


def _count(distribution: str) -> int:
    return int(re.search(r"count=(\d+)", distribution).group(1))


def listening_addresses(pgid: int) -> list[str]:
    """The local addresses of the TCP sockets that processes of process group ``pgid`` listen on
    (the JVM and its Python workers), from ``ss``."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=30, check=True).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        for pid in re.findall(r"pid=(\d+)", line):
            try:
                if os.getpgid(int(pid)) == pgid:
                    found.append(fields[3])
                    break
            except ProcessLookupError:
                continue
    return found


@pytest.fixture
def push_receiver():
    r = PushReceiver()
    yield r
    r.close()


def _produce_calm(env: dict[str, str], camera: str, frames: int) -> None:
    """``frames`` records of a still scene for ``camera``, written directly (the edge would take minutes)."""
    cfg = load_config(env=env)
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers)
    t0 = int(time.time() * 1000) - frames * 100
    for i in range(frames):
        value = FrameFeatures(camera, i, t0 + 100 * i, 360, 240, CALM).encode("float16")
        p.send(cfg.kafka.topics.features, key=camera.encode(), value=value, timestamp_ms=t0 + 100 * i)
    p.flush()
    p.close()


def _produce_dead_letters(env: dict[str, str]) -> None:
    """A truncated record and a valid one from an edge with other settings than the model's: one dead
    letter each, under two reasons."""
    cfg = load_config(env=env)
    p = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap_servers)
    now = int(time.time() * 1000)
    misset = FrameFeatures(MISSET_CAMERA, 0, now, 360, 240, CALM, edge_digest=12345).encode("float16")
    p.send(cfg.kafka.topics.features, key=MISSET_CAMERA.encode(), value=misset, timestamp_ms=now)
    p.send(cfg.kafka.topics.features, key=b"metrics-broken", value=b"VADF\x01 not a record", timestamp_ms=now)
    p.flush()
    p.close()


def test_operator_metrics_reach_flink(job_env, ped2, produce, jobs, local_rest, push_receiver):
    env = job_env(
        "metrics",
        VAD_JOB__LOCAL_REST_PORT=str(local_rest.port),
        VAD_JOB__LOCAL_FLINK_SETTINGS=push_receiver.flink_settings(),
    )
    ensure_topics(load_config(env=env).kafka)
    _produce_dead_letters(env)
    sent = produce(env, {CAMERA: ped2 / "test" / "Test004.mp4"})[CAMERA]  # anomalous from frame 31
    # Enough frames for the score-drift gauges of a camera (udfs/score_drift.py MIN_SAMPLES).
    _produce_calm(env, DRIFT_CAMERA, DRIFT_FRAMES)
    total = sent + DRIFT_FRAMES
    drift_p99 = "flink_taskmanager_job_task_operator_vad_camera_score_p99_x1000"
    job = jobs.start(env)
    seen = {}
    try:
        deadline = time.monotonic() + 300
        # The Redis writer is a task of its own: its metrics come with its own bundles.
        while time.monotonic() < deadline and (
            int(seen.get("windows_scored", 0)) < total
            or int(seen.get("redis_events_written", 0)) < 1
            or int(seen.get("vad_dead_letters", 0)) < 2
        ):
            assert job.poll() is None, f"the job died\n{jobs.logs(job)}"
            time.sleep(2)
            try:
                seen = _vad_metrics(local_rest)
            except OSError:  # the cluster's REST endpoint is not up yet
                continue
        # A local run's REST API and web UI (which can cancel the job) listen on loopback only.
        # (Beam's gRPC servers for the Python worker bind every interface in Beam's own code.)
        listening = {a.rsplit(":", 1)[1]: a.rsplit(":", 1)[0] for a in listening_addresses(job.pid)}
        # The reporter pushes every second; wait for a push with everything counted above.
        until = time.monotonic() + 30
        while time.monotonic() < until and push_receiver.value(
            "flink_taskmanager_job_task_operator_vad_camera_windows_scored", DRIFT_CAMERA
        ) != float(DRIFT_FRAMES):
            time.sleep(0.5)
        exported = push_receiver.samples()
        p99 = push_receiver.value(drift_p99, DRIFT_CAMERA)
        calibration = push_receiver.value(
            "flink_taskmanager_job_task_operator_vad_camera_calibration_p99_x1000", DRIFT_CAMERA
        )
    finally:
        jobs.kill(job)
    assert listening.get(str(local_rest.port)) in ("127.0.0.1", "[::ffff:127.0.0.1]"), listening
    assert int(seen["records_in"]) == total + 2 and int(seen["windows_scored"]) == total, seen
    batches = int(seen["batches"])
    assert 0 < batches <= total and _count(seen["batch_size"]) == batches
    assert _count(seen["inference_us"]) == batches and _count(seen["frame_score_x1000"]) == total
    assert int(seen["vad_events_opened"]) >= 1 and int(seen["redis_events_written"]) >= 1
    # Per camera under a `camera` key group, a label in Prometheus (udfs/score_drift.py); the summed
    # inference time is what Prometheus gets of it (a distribution is exported there as 0).
    assert int(seen[f"camera.{CAMERA}.windows_scored"]) == sent, seen
    assert int(seen["inference_us_sum"]) > 0, seen
    # Dead letters in all and per reason, a label in Prometheus.
    assert int(seen["vad_dead_letters"]) == 2, seen
    assert int(seen["reason.truncated.dead_letters"]) == 1, seen
    assert int(seen["reason.edge_settings_mismatch.dead_letters"]) == 1, seen
    # Counted once at 0 in the operators' first element: there, and at 0, without a single count.
    for name in (
        "reason.grid_mismatch.dead_letters",
        "late_or_duplicate_frames",
        "frames_missing",
        "redis_events_duplicate",
        "redis_retries",
        "redis_events_held",
        "redis_events_dropped",
        "model_swaps",
        "model_versions_refused",
    ):
        assert seen.get(name) == "0", (name, seen)

    # What the rules and dashboards select is exported under those names, by the real reporter.
    names, patterns = selected_series()
    assert len(names) >= 15, names
    flink = {n for n in exported if n.startswith("flink_")}
    missing = sorted(names - flink)
    assert not missing, (missing, sorted(n for n in flink if "_job_" in n))
    for pat in patterns:
        assert any(re.fullmatch(pat, n) for n in flink), (pat, sorted(flink))
    # Per camera: a `camera` label on the camera group's series; the job's series carry job_name.
    assert "camera" in exported["flink_taskmanager_job_task_operator_vad_camera_windows_scored"], exported
    assert {"camera", "job_name"} <= exported[drift_p99], exported[drift_p99]
    assert "job_name" in exported["flink_taskmanager_job_task_operator_vad_records_in"], exported
    assert "reason" in exported["flink_taskmanager_job_task_operator_vad_reason_dead_letters"], exported
    # A still scene scores 0; the shipped model's card has a calibrated p99 above 0 (the drift rule
    # divides by it).
    assert p99 == 0.0 and calibration is not None and calibration > 0, (p99, calibration)
