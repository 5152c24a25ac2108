"""Streaming-job benchmark: records/s per core through Kafka -> job -> sinks, the ratio against a
per-record ONNX map, and frame-to-visible latency in both delivery modes.

    .venv/bin/python -m bench.job [--quick]        prints one JSON line

The job runs as `python -m vadctl.cli run` (the real job, its defaults) against the bench's own
stack. Throughput is read from the job's committed source offsets: the Kafka source commits them
when a checkpoint completes, so they count records through every operator and sink. The rate is
taken between checkpoints from 30 s after the first one, over 25 s (JVM start-up and JIT warm-up
not counted), on a backlog of 2,000,000 records that lasts that long. The job and the per-record
map run twice each, A B ... B A, and their figures are the means. Latency is read from the events
topic, as a consumer downstream sees it. The pass-through floor is built here, by
``python -m bench.job --pipeline passthrough``, from the job's own source and sink.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import threading
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from bench import common as c
from vad.config import REPO_ROOT
from vad.kafka_clients import ensure_topics
from vadctl import stack

CAMERAS = 100
HALF = 0.5  # latency is measured at half the sustained rate (the definition)
WARM_UP_S, MEASURE_S = 30, 25  # seconds after a throughput run's first checkpoint: skipped, then measured
PYTHONPATH = {"PYTHONPATH": str(REPO_ROOT)}  # so Flink's Python workers can import bench.job


def _job_env(tag: str, features: str, **extra: str) -> dict[str, str]:
    return c.bench_env(tag, VAD_KAFKA__TOPICS__FEATURES=features, **extra)


def throughput(tag: str, features: str, n: int, window: tuple[float, float], settings: dict, argv: list[str]) -> dict:
    """One bounded run over the pre-produced records, measured over `window` = (warm-up, measured)
    seconds after its first checkpoint; stopped when the measured part is over or the records are
    all through."""
    warm_s, measure_s = window
    env = _job_env(tag, features, VAD_JOB__BOUNDED="true", **PYTHONPATH, **settings)
    cfg = c.config(env)
    ensure_topics(cfg.kafka)
    job = c.start_job(env, argv, f"job-{tag}")
    cpu = c.CpuSampler(partial(c.tree_cpu_s, job.pid))
    offsets = c.OffsetSampler(cfg, features)
    # One checkpoint interval (and a little) past the measured part, so its last commit is seen.
    run_ms = (warm_s + measure_s + 2) * 1000 + cfg.job.checkpoint_interval_ms
    deadline = time.monotonic() + 180 + warm_s + measure_s
    try:
        while time.monotonic() < deadline and offsets.last < n and job.poll() is None:
            time.sleep(0.5)
            first = offsets.first_commit_ms()
            if first and time.time() * 1000 - first > run_ms:
                break
    finally:
        offsets.stop()
        cpu.stop()
        c.stop_job(job)
    return _rate(offsets.commits(), n, cpu, settings, warm_s, measure_s)


def _rate(
    commits: list[tuple[float, int]], n: int, cpu: c.CpuSampler, settings: dict, warm_s: float, measure_s: float
) -> dict:
    out = {"records_through": commits[-1][1] if commits else 0, "settings": settings, "warm_up_s": warm_s}
    if len(commits) < 2:
        return {**out, "error": "fewer than two checkpoints committed offsets"}
    # A new JVM compiles (C1/C2 JIT) for its first tens of seconds, measured at 0.3-0.4 of a core;
    # a job runs for days, so the sustained rate is read after a warm-up: between the first
    # checkpoint commit warm_s after the first one and the last within measure_s of it.
    lo = commits[0][0] + warm_s * 1000
    inside = [x for x in commits if x[0] >= lo]
    if not inside:
        return {**out, "error": f"no checkpoint after the {warm_s} s warm-up: too few records produced"}
    a = inside[0]
    b = [x for x in inside if x[0] <= a[0] + (measure_s + 1) * 1000][-1]
    span = (b[0] - a[0]) / 1000
    if span < 5:
        return {**out, "error": f"only {span:.1f} s between checkpoints after the warm-up"}
    rate = (b[1] - a[1]) / span
    cores = cpu.cores_between(a[0], b[0])
    return {
        **out,
        "records_per_s": round(rate, 1),
        "cores_used": round(cores, 2) if cores else None,
        "records_per_cpu_s": round(rate / cores, 1) if cores else None,
        "window_s": round(span, 2),
        "checkpoints_in_window": sum(1 for x in inside if x[0] <= b[0]) - 1,
        # The records were all through by the last checkpoint: part of the window may have been idle.
        "backlog_ran_out": bool(b[1] >= n),
    }


class Latency:
    """Paced producer (ts_ms = send wall time) and a read_committed reader of the events topic:
    an event's latency is its receive time minus the ts_ms of the frame that caused it."""

    def __init__(self, cfg, cameras: list[str], grids: np.ndarray):
        self.cfg, self.cams, self.records = cfg, cameras, c.Records(grids)
        self.cam_bytes = {cam: cam.encode() for cam in cameras}
        self.frame = dict.fromkeys(cameras, 0)
        self.sent = 0
        self.lat: list[tuple[int, float]] = []  # (frame ts ms, receive - ts ms)
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        consumer = c.fast_consumer(self.cfg, self.cfg.kafka.topics.events)
        try:
            while not self.stop.is_set():
                # poll returns as soon as an event is there; consume(timeout=0) then takes what has
                # been fetched already (consume with a timeout waits for all 5,000 or the timeout).
                first = consumer.poll(0.1)
                batch = [m for m in ([first] if first else []) + consumer.consume(5000, timeout=0) if not m.error()]
                now = time.time() * 1000
                for m in batch:
                    e = json.loads(m.value())
                    # An idle or gap CLOSE carries the camera's last frame, and is emitted by design
                    # a timeout later (or at the next frame): not a frame's latency.
                    if e["phase"] != "close" or e.get("close_reason") == "score":
                        self.lat.append((e["ts_ms"], now - e["ts_ms"]))
        finally:
            consumer.close()

    def pace(self, prod, rate: float, seconds: float, until=None) -> int:
        """Send `rate` records/s round-robin over the cameras for `seconds` (or until `until()`)."""
        t0, sent, i = time.monotonic(), 0, 0
        while time.monotonic() - t0 < seconds and not (until and until()):
            due = int((time.monotonic() - t0) * rate) - sent
            for _ in range(max(due, 0)):
                cam = self.cams[i % len(self.cams)]
                i += 1
                f = self.frame[cam]
                self.frame[cam] = f + 1
                ts = int(time.time() * 1000)
                raw = self.records.make(self.cam_bytes[cam], f, ts, (f + 7 * i) % len(self.records))
                c.send(prod, self.cfg.kafka.topics.features, cam, raw, ts)
                sent += 1
            prod.poll(0)
            time.sleep(0.005)
        prod.flush(30)
        self.sent += sent
        return sent


def _sharing_readers(cfg) -> dict[str, Callable[[], float]]:
    """CPU-seconds readers of what shares the machine with a job under test (a service that is
    not running is left out)."""
    readers = {"load_generator_and_reader": partial(c.process_cpu_s, os.getpid()), "steal": c.machine_steal_s}
    for svc in stack.services(cfg):
        pid = svc.pid()
        if pid is not None:
            readers[svc.name] = partial(c.process_cpu_s, pid)
    return readers


def latency(tag: str, delivery: str, rate: float, seconds: float, grids: np.ndarray, extra: dict) -> dict:
    """The job with its defaults (no per-frame scores topic) paced at `rate`; latency of the events."""
    features = f"bench.{tag}.features"
    env = _job_env(tag, features, VAD_JOB__DELIVERY=delivery, **extra)
    cfg = c.config(env)
    ensure_topics(cfg.kafka)
    lat = Latency(cfg, c.camera_ids(CAMERAS), grids)
    prod = c.fast_producer(cfg, linger_ms=2)
    job = c.start_job(env, ["-m", "vadctl.cli", "run"], f"job-{tag}")
    cpu = c.CpuSampler(partial(c.tree_cpu_s, job.pid))
    # The whole machine too, and who shares its cores with the job: the broker, Redis, this process
    # (the load generator, the events reader, the samplers) and the host's other guests (steal).
    machine = c.CpuSampler(c.machine_cpu_s)
    sharing = {name: c.CpuSampler(read) for name, read in _sharing_readers(cfg).items()}
    offsets = c.OffsetSampler(cfg, features)
    interval_s = cfg.job.checkpoint_interval_ms / 1000
    try:
        # Start-up: a trickle of 10 records/s until a checkpoint shows the job consuming, then
        # until every trickle record is through, so no start-up backlog leaks into the measurement.
        t0 = time.monotonic()
        lat.pace(prod, 10, 180, until=lambda: offsets.last > 0)
        startup_s = time.monotonic() - t0
        if offsets.last == 0:
            return {"error": "job committed no checkpoint during start-up", "delivery": delivery}
        for _ in range(60):
            lat.pace(prod, 10, 1)
            if offsets.last >= lat.sent:
                break
        # Warm up past the JVM's JIT compilation (~20-30 s of a new job, up to half its CPU) at half
        # the rate: at the full rate a cold job builds a backlog there that it then takes the whole
        # measurement to drain (measured). Then settle at the rate and measure.
        lat.pace(prod, rate / 2, 25)
        lat.pace(prod, rate, 5)
        start_ms = time.time() * 1000
        sent = lat.pace(prod, rate, seconds)
        end_ms = time.time() * 1000
        # Every record through the sinks (a checkpoint committed past it), then a moment for the
        # reader: an exactly-once sink commits its transaction on the same checkpoint.
        deadline = time.monotonic() + 10 + 2 * interval_s
        while time.monotonic() < deadline and offsets.last < lat.sent:
            time.sleep(0.2)
        time.sleep(1.0)
        drained = offsets.last >= lat.sent
    finally:
        lat.stop.set()
        lat.reader.join(timeout=10)
        offsets.stop()
        cpu.stop()
        machine.stop()
        for sampler in sharing.values():
            sampler.stop()
        c.stop_job(job)
        prod.flush(10)
    vals = np.array([d for ts, d in lat.lat if start_ms <= ts <= end_ms])
    out = {"delivery": delivery, "rate_per_s": round(rate, 1), "seconds": seconds, "sent": sent}
    out.update(events=int(vals.size), all_through=drained, startup_s=round(startup_s, 1))
    # The job's own CPU while live (records arrive as they are made, batches fill by time, not by
    # count): what a deployment pays per frame, unlike the backlog throughput runs.
    cores = cpu.cores_between(start_ms, end_ms)
    if cores:
        out.update(job_cores=round(cores, 2), job_cpu_us_per_record=round(cores * 1e6 / rate))
    busy = machine.cores_between(start_ms, end_ms)
    if busy:
        out["machine_cores"] = round(busy, 2)
        split = {name: sampler.cores_between(start_ms, end_ms) for name, sampler in sharing.items()}
        out["machine_cores_beside_job"] = {name: round(v, 2) for name, v in split.items() if v is not None}
    if vals.size:
        out.update({f"p{q}_ms": round(float(np.percentile(vals, q)), 1) for q in (50, 90, 99)})
        out["max_ms"] = round(float(vals.max()), 1)
    ckpt = c.CACHE / "ckpt" / tag
    done = sorted(ckpt.glob("*/chk-*/_metadata"), key=lambda p: int(p.parent.name.split("-")[1]))
    if done:
        out["checkpoint_bytes"] = c.dir_bytes(done[-1].parent)
    return out


def _mean(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key)]
    return sum(vals) / len(vals) if vals else None


def summarise(tp: dict[str, dict]) -> dict:
    """The goal keys from the throughput runs: each of the job and the per-record map is the mean
    of its two runs (A B ... B A), or the one run that gave a rate."""
    job = [tp[k] for k in ("default", "default_2") if k in tp]
    per = [tp[k] for k in ("per_record_map", "per_record_map_2") if k in tp]
    cpu, wall = _mean(job, "records_per_cpu_s"), _mean(job, "records_per_s")
    per_cpu, per_wall = _mean(per, "records_per_cpu_s"), _mean(per, "records_per_s")
    if not (cpu and wall and per_cpu and per_wall):
        return {}
    return {
        "job_records_per_s": round(wall, 1),
        "job_records_per_s_per_core": round(cpu, 1),
        "job_vs_per_record_ratio": round(cpu / per_cpu, 2),
        "job_vs_per_record_ratio_wall": round(wall / per_wall, 2),
    }


def state_sizes(grids: np.ndarray) -> dict:
    """Pickled bytes of one camera's keyed state, as the job stores it (PICKLED_BYTE_ARRAY)."""
    from models.card import ModelCard, card_path
    from vad.config import load_config
    from vad.detect import CameraState, EpisodeDetector, state_to_dict
    from vad.records import CameraState as JobState

    cfg = load_config(env={})
    card = ModelCard.load(card_path(cfg.resolve(cfg.job.model_path)))
    thr, t = card.detection_threshold(cfg.detect), card.window
    det, st = EpisodeDetector(cfg.detect, thr, card.model_version), CameraState()
    for i in range(round(cfg.detect.min_duration_s * 10) + 3):  # an open event carries its heatmap: worst case
        det.step(st, "cam-0000", i, 1_700_000_000_000 + 100 * i, thr * 3, np.ones((12, 18), np.float32))
    window = [grids[i] for i in range(t - 1)]
    # ScoreAndDetect's "camera" entry: last frame, the last T-1 grids, the detector state.
    total = len(pickle.dumps(JobState(1234, window, st)))
    detect = len(pickle.dumps(state_to_dict(st)))  # the detector's part, as JobState pickles it
    return {"window_bytes": total - detect, "detector_bytes": detect, "total": total}


def run(quick: bool = False) -> dict:
    grids = c.ped2_grids()
    rid = time.strftime("%H%M%S")
    # 100 cameras x 20,000 frames: enough backlog for start-up, warm-up and the measured part at ~28,000/s
    # (docs/benchmarks.md); a backlog that runs out mid-measurement reads as a lower rate.
    frames, window = (1500, (3, 6)) if quick else (20000, (WARM_UP_S, MEASURE_S))
    # A quick run (a smoke test of the harness) checkpoints every second to have commits to read.
    base = {"VAD_JOB__CHECKPOINT_INTERVAL_MS": "1000"} if quick else {}
    out: dict = {"cameras": CAMERAS, "quick": quick, "cpu_count": os.cpu_count()}
    try:
        c.stack_up()
        features = f"bench.{rid}.in"
        env = c.bench_env(rid, VAD_KAFKA__TOPICS__FEATURES=features)
        ensure_topics(c.config(env).kafka)
        t0 = time.monotonic()
        n = c.produce_burst(c.config(env), CAMERAS, frames, grids, int(time.time() * 1000) - frames * 100)
        out["records_produced"] = n
        out["produce_s"] = round(time.monotonic() - t0, 1)
        # The broker has just written ~2 GB: let the kernel write it back now, not during the
        # first measured run.
        t0 = time.monotonic()
        os.sync()
        out["sync_s"] = round(time.monotonic() - t0, 1)
        job = ["-m", "vadctl.cli", "run"]
        per_record = ({**base, "VAD_JOB__BATCH_SIZE": "1"}, job)
        # The job as deployed (its defaults) and the per-record map (one ONNX call per record), in
        # the order A B ... B A: the machine's speed drifts over minutes here (runs of one job
        # differed by up to a third), and a steady drift cancels between the two means. Between them,
        # what the optional per-frame scores topic costs and the pass-through floor (Kafka -> one
        # Python map -> Kafka, no state, no model).
        runs = {"default": (base, job), "per_record_map": per_record}
        if not quick:
            runs["with_scores_topic"] = ({"VAD_JOB__EMIT_SCORES": "true"}, job)
            runs["passthrough"] = ({}, ["-m", "bench.job", "--pipeline", "passthrough"])
        runs["per_record_map_2"] = per_record
        runs["default_2"] = (base, job)
        tp = {name: throughput(f"{rid}-{name}", features, n, window, st, argv) for name, (st, argv) in runs.items()}
        out["throughput"] = tp
        out.update(summarise(tp))
        rate = HALF * out.get("job_records_per_s", 200)
        secs = 10 if quick else 15
        alo = latency(f"{rid}-alo", "at_least_once", rate, secs, grids, {})
        eo = latency(f"{rid}-eo", "exactly_once", rate, secs, grids, {"VAD_JOB__CHECKPOINT_INTERVAL_MS": "1000"})
        out["latency"] = {"at_least_once": alo, "exactly_once": {**eo, "checkpoint_interval_ms": 1000}}
        out["latency_p50_ms_at_least_once"] = alo.get("p50_ms")
        out["latency_p99_ms_at_least_once"] = alo.get("p99_ms")
        out["latency_p99_ms_exactly_once"] = eo.get("p99_ms")
        sizes = state_sizes(grids)
        out["state_bytes_per_camera"] = sizes["total"]
        out["state_bytes_detail"] = sizes
        if eo.get("checkpoint_bytes"):
            out["checkpoint_bytes_per_camera"] = round(eo["checkpoint_bytes"] / CAMERAS)
    finally:
        out["stack_down"] = c.stack_down()
    out["notes"] = NOTES
    return out


NOTES = (
    "records_per_s: records through Kafka -> job -> sinks, from the job's committed source offsets "
    "(committed when a checkpoint completes, i.e. once every earlier record has passed every operator "
    "and the sinks flushed), between the first checkpoint 30 s after the first one and the last within "
    "25 s of it (start-up and JIT warm-up excluded; backlog_ran_out says the records ended first). The "
    "job runs with its defaults (no per-frame scores topic; with_scores_topic shows its cost). "
    "Per core = records_per_s / cores_used, cores_used = CPU seconds of the job's whole process tree "
    "(client, JVM, Python worker) over that window / wall seconds: parallelism 1, but the JVM and the "
    "Python worker run concurrently, so 'one core' would flatter it. The per-record map is the same "
    "job with batch_size=1 (one ONNX call per record). The job and the per-record map run twice each, "
    "in the order A B ... B A (default, per_record_map, ..., per_record_map_2, default_2), and the "
    "goal keys are the means of the two runs, so a steady drift of the machine's speed cancels. "
    "Latency: frame ts_ms = wall clock at send; an "
    "event's latency is the receive time of a read_committed consumer of the events topic minus the "
    "ts_ms of the frame that caused it (OPEN, UPDATE, CLOSE by score; idle and gap closes excluded), "
    "so it covers decode, batch scoring, detection, the Redis write and the Kafka sink; machine_cores "
    "is the whole machine's busy CPU over the measured part (load generator, broker and reader included; "
    "machine_cores_beside_job splits out the broker, Redis, this process and steal, the host's other guests). "
    "state_bytes_per_camera: pickled ScoreAndDetect camera entry (last frame, T-1 grids, detector state "
    "with an open event); checkpoint_bytes_per_camera: last exactly-once checkpoint folder / cameras. "
    "The machine is shared: compare ratios within one run."
)


# --- comparison pipelines, run as `python -m bench.job --pipeline NAME` -------------------------


def _pipeline(name: str) -> None:
    from pyflink.common import Types, WatermarkStrategy
    from pyflink.datastream import StreamExecutionEnvironment

    from jobs import anomaly_job as aj
    from jobs.runtime import flink_configuration, local_run_options
    from vad.config import load_config

    cfg = load_config()
    local_run_options(cfg)
    env = StreamExecutionEnvironment.get_execution_environment(flink_configuration(cfg))
    if name == "passthrough":  # Kafka -> one Python map (header only) -> scores sink: the floor
        src = env.from_source(aj.kafka_source(cfg), WatermarkStrategy.no_watermarks(), "frame-features")
        src.map(_header_json, Types.STRING()).sink_to(aj.kafka_sink(cfg, cfg.kafka.topics.scores, "scores"))
    env.execute(f"bench-{name}")


def _header_json(raw: bytes) -> str:
    from vad.schema import _HEADER, HEADER_SIZE

    _, _, _, n, idx, ts, *_ = _HEADER.unpack_from(raw, 0)
    cam = bytes(raw[HEADER_SIZE : HEADER_SIZE + n]).decode()
    return json.dumps({"camera_id": cam, "frame_index": idx, "ts_ms": ts, "score": 0.0})


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--pipeline", choices=["passthrough"], default=None)
    a = p.parse_args()
    if a.pipeline:
        _pipeline(a.pipeline)
    else:
        print(json.dumps(run(quick=a.quick)))
        sys.stdout.flush()
