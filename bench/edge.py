"""Edge producer benchmark: frames per second per core on the UCSD Ped2 clips, split by stage.

``run()`` returns one dict (``python -m bench.edge`` prints it as the last stdout line):

- ``edge_fps_per_core``: sampled frames per CPU-second of this process, single-threaded (OpenCV and the
  decoder on one thread), end to end with the default edge settings: decode -> normalise -> flow ->
  features -> encode -> produce. CPU time (``time.process_time``) rather than wall time, so other
  work on a shared machine does not count against us; it includes kafka-python's I/O thread.
- ``ms_per_frame``: CPU ms per frame and stage (thread time). ``produce`` is the rest of the process
  CPU: the ``send()`` calls plus kafka-python's batching, lz4 compression and socket I/O.
- ``produce_mode``: ``kafka`` when a broker answered at ``bootstrap`` (records really sent, acks=all,
  flushed), else ``serialise_only`` (records encoded, nothing sent; the figure then omits Kafka).
- ``edge_vs_farneback_ratio``: default-settings fps / full-resolution Farneback fps (same run, same
  clips, same other settings, decode..encode), and a few reference flow settings on one clip.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PED2 = REPO.parent / "shared" / "datasets" / "ucsd_ped2"
BENCH_TOPIC = "vad.bench-edge"


def _pipeline(clips: list[Path], settings, producer=None, topic: str = BENCH_TOPIC) -> dict:
    """Single-threaded decode..encode(..send) over the clips; CPU seconds per stage and in total."""
    from bench.common import WIRE_PRECISION
    from vad.edge.blind import blind_watch
    from vad.edge.features import make_extractor
    from vad.edge.stats import CameraStats
    from vad.edge.stream import CameraStream, sampled_frames
    from vad.schema import FLAG_GAP, FrameFeatures

    stats = CameraStats("bench")
    sent = {"ok": 0, "failed": 0}
    n = 0
    cpu0 = time.process_time()
    for clip in clips:
        ex = make_extractor(settings)
        blind = blind_watch(settings)
        for i, s in enumerate(sampled_frames(CameraStream(str(clip), settings, stats))):
            feats = ex.process(s.gray, s.step_ms)
            if blind is not None:  # the producer's check
                blind.update(s.gray, s.ts_ms, s.gap)
            t0 = time.thread_time()
            rec = FrameFeatures("bench-" + clip.stem, i, s.ts_ms, s.gray.shape[1], s.gray.shape[0], feats)
            if s.gap:
                rec = FrameFeatures(**{**rec.__dict__, "flags": FLAG_GAP})
            value = rec.encode(WIRE_PRECISION)
            stats.add_time("encode", time.thread_time() - t0)
            if producer is not None:
                fut = producer.send(topic, key=rec.camera_id.encode(), value=value, timestamp_ms=rec.ts_ms)
                fut.add_callback(lambda _m: sent.__setitem__("ok", sent["ok"] + 1))
                fut.add_errback(lambda _e: sent.__setitem__("failed", sent["failed"] + 1))
            n += 1
        for k, v in ex.timings.items():
            stats.add_time(k, v)
    if producer is not None:
        producer.flush(timeout=60)
    cpu = time.process_time() - cpu0
    stages = {k: v for k, v in stats.stage_s.items() if k != "produce"}
    stages["produce"] = max(0.0, cpu - sum(stages.values())) if producer is not None else 0.0
    return {"frames": n, "cpu_s": cpu, "stage_s": stages, "sent": sent}


def _connect(bootstrap: str | None):
    """A producer like the edge's (acks=all, lz4, linger) if a broker answers, else None."""
    if not bootstrap:
        return None
    try:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        from vad.config import load_config
        from vad.kafka_clients import make_producer

        admin, deadline = None, time.monotonic() + 60
        while admin is None:  # a broker that was just started may take a while to answer
            try:
                admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        try:
            if BENCH_TOPIC not in admin.list_topics():
                try:
                    admin.create_topics([NewTopic(BENCH_TOPIC, num_partitions=1, replication_factor=1)])
                except TopicAlreadyExistsError:
                    pass
        finally:
            admin.close()
        cfg = load_config(env={"VAD_KAFKA__BOOTSTRAP_SERVERS": bootstrap})
        # The bench backfills files as fast as they decode, as `vad produce` does without --realtime.
        return make_producer(cfg.kafka, linger_ms=cfg.edge.backfill_linger_ms, compression=cfg.edge.compression)
    except Exception as e:  # unreachable broker: measure serialisation only, and say so
        print(
            f"bench.edge: no broker at {bootstrap} ({e.__class__.__name__}); produce = serialise only", file=sys.stderr
        )
        return None


def _fps(r: dict) -> float:
    return r["frames"] / max(r["cpu_s"], 1e-9)


def run(bootstrap: str | None = None, data: Path = PED2, max_clips: int = 6) -> dict:
    import cv2

    from vad.config import EdgeConfig

    cv2.setNumThreads(1)
    clips = sorted((Path(data) / "test").glob("*.mp4"))[:max_clips]
    if not clips:
        raise FileNotFoundError(f"no Ped2 test clips under {data}/test")
    base = EdgeConfig().settings_for(None).model_copy(update={"decode_threads": 1, "decoder": "auto"})
    _pipeline(clips[:1], base)  # warm-up: imports, codec and DIS initialisation, page cache

    producer = _connect(bootstrap)
    try:
        edge = _pipeline(clips, base, producer)
    finally:
        if producer is not None:
            producer.close(timeout=10)
    # Without Kafka: the same pipeline, for the ratio and for decode..encode on its own.
    edge_local = edge if producer is None else _pipeline(clips, base)
    # The reference: classic full-resolution Farneback, as most flow-based detectors run it.
    farneback = _pipeline(clips, base.model_copy(update={"flow": "farneback", "flow_scale": 1.0}))
    refs = {}
    for name, upd in {
        "farneback_x0.5_equalize_previous_default": {"flow": "farneback", "normalise": "equalize"},
        "dis_ultrafast_x0.5_preset": {"dis_finest_scale": None, "dis_iterations": None, "flow_gate": 0.0},
        "dis_medium_x1.0": {
            "dis_preset": "medium",
            "dis_finest_scale": None,
            "dis_iterations": None,
            "dis_patch_stride": None,
            "flow_scale": 1.0,
        },
        "decoder_opencv": {"decoder": "opencv"},
    }.items():
        refs[name] = round(_fps(_pipeline(clips[:1], base.model_copy(update=upd))), 1)

    from vad.edge.sources import decoder_for

    n = edge["frames"]
    return {
        "edge_fps_per_core": round(_fps(edge), 1),
        "edge_ms_per_frame": round(1000 * edge["cpu_s"] / n, 3),
        "ms_per_frame": {k: round(1000 * v / n, 3) for k, v in edge["stage_s"].items()},
        "produce_mode": "kafka" if producer is not None else "serialise_only",
        "records_acked": edge["sent"]["ok"] if producer is not None else None,
        "delivery_errors": edge["sent"]["failed"] if producer is not None else None,
        "edge_fps_per_core_without_kafka": round(_fps(edge_local), 1),
        "farneback_fps_per_core": round(_fps(farneback), 1),
        "edge_vs_farneback_ratio": round(_fps(edge_local) / _fps(farneback), 2),
        "reference_fps_per_core_one_clip": refs,
        "goal_fps_per_core": 400,
        "frames": n,
        "clips": [c.stem for c in clips],
        "frame_size": [360, 240],
        "decoder": decoder_for(base),
        "settings": base.model_dump(
            mode="json",
            include={
                "flow",
                "dis_preset",
                "dis_finest_scale",
                "dis_iterations",
                "dis_patch_stride",
                "flow_scale",
                "normalise",
                "flow_gate",
                "grid_rows",
                "grid_cols",
            },
        ),
        "threads": 1,
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", default=os.environ.get("VAD_BENCH_BOOTSTRAP"), help="Kafka to send to, if any")
    p.add_argument("--data", type=Path, default=PED2)
    p.add_argument("--max-clips", type=int, default=6)
    a = p.parse_args(argv)
    print(json.dumps(run(a.bootstrap, a.data, a.max_clips)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
