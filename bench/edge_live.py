"""Live edge capacity: how many cameras one edge process keeps up with at their own frame rate.

``python -m bench.edge_live --cameras 8 16 32 --procs 1 2`` runs, for each (cameras, processes)
pair, that many cameras split over that many edge processes. Each camera is a Ped2 clip (cycled
over the train and test folders) paced at its native rate, as ``vad produce --realtime`` paces a
file, with the cameras' first frames spread over one frame period as independent cameras' are. The
records go through the edge's own workers (capture and send threads, bounded queue) and producer
(live linger) to the bench's broker.

Per record it takes the *send lag*: the wall time at which the send thread hands the record to the
Kafka client minus the frame's event time, so the time to decode, compute flow and features,
encode and queue it, waiting for the CPU and the GIL included (a file's next frame is decoded
before it is due, so decoding shows in the lag only once the process falls behind; a live camera's
frame is decoded after it arrives); and the *ack lag*, to the broker's acknowledgement. A process
keeps up when nothing is dropped and the send lag stays under one frame period at p99: each
frame's record is out before the camera's next frame is due. The first two seconds of the run
(imports, DIS initialisation) are left out.

Each point also counts the cameras the edge's own watch warned about (``cameras_warned_behind``:
backlog past ``edge.lag_warn_ms``, vad/edge/lag.py), a coarser test than one frame period.

The last stdout line is one JSON object; it is also saved under bench/results/. Frames are Ped2's
360x240 unless ``--data`` names another folder of the same layout: decode and flow cost grow with
the pixels, so a larger camera takes more (``--edge flow_scale=0.25`` and the like set an edge
field for every camera).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
PED2 = REPO.parent / "shared" / "datasets" / "ucsd_ped2"
WARMUP_MS = 2000.0


class TimedProducer:
    """The edge's producer, taking each record's send and acknowledgement lag (list appends are
    atomic in CPython, so the send threads and the client's I/O thread share the lists safely)."""

    def __init__(self, inner):
        self.inner = inner
        self.sent: list[tuple[float, float]] = []  # (event time ms, wall ms at send)
        self.acked: list[tuple[float, float]] = []  # (event time ms, wall ms at acknowledgement)

    def send(self, topic, key, value, timestamp_ms):
        self.sent.append((timestamp_ms, time.time() * 1000.0))
        fut = self.inner.send(topic, key=key, value=value, timestamp_ms=timestamp_ms)
        fut.add_callback(lambda _m, ts=timestamp_ms: self.acked.append((ts, time.time() * 1000.0)))
        return fut

    def flush(self, timeout=None):
        self.inner.flush(timeout=timeout)

    def close(self, timeout=None):
        self.inner.close(timeout=timeout)


def frame_period_s(settings) -> float:
    """One frame of a camera sampled at ``target_fps`` (10 when it keeps every frame: Ped2's rate)."""
    return 1.0 / (settings.target_fps or 10.0)


def clips(data: Path, frames: int) -> list[Path]:
    """The train and test clips at least ``frames`` long, so every camera runs the same time."""
    import cv2

    found = []
    for path in sorted((data / "train").glob("*.mp4")) + sorted((data / "test").glob("*.mp4")):
        cap = cv2.VideoCapture(str(path))
        if cap.get(cv2.CAP_PROP_FRAME_COUNT) >= frames:
            found.append(path)
        cap.release()
    if not found:
        raise FileNotFoundError(f"no clips of {frames} frames or more under {data}/train or {data}/test")
    return found


def _frame_size(path: Path) -> list[int]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return [int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))]
    finally:
        cap.release()


def _part(env: dict[str, str], sources: list[str], first: int, n_total: int, frames: int, out) -> None:
    """One edge process: cameras ``first`` .. of ``n_total``, their starts spread over one frame period."""
    import cv2

    from vad.config import load_config
    from vad.edge.producer import CameraWorker, linger_for
    from vad.kafka_clients import make_producer

    cv2.setNumThreads(1)  # as each camera decodes and computes flow on its own thread
    cfg = load_config(env=env)
    base = cfg.edge.settings_for(None).model_copy(update={"realtime": True})
    cams = [(f"live-{first + i:04d}", src, base) for i, src in enumerate(sources)]
    producer = TimedProducer(
        make_producer(cfg.kafka, linger_ms=linger_for(cfg, cams), compression=cfg.edge.compression)
    )
    stop = threading.Event()
    workers = [CameraWorker(cfg, cid, src, st, producer, stop) for cid, src, st in cams]
    period_s = frame_period_s(base)
    t0, cpu0 = time.monotonic(), time.process_time()
    for i, w in enumerate(workers):
        # Camera k of all starts k/n of a frame period after this process started: spread within a
        # process; the processes themselves start at their own times, as separate machines would.
        time.sleep(max(0.0, t0 + period_s * (first + i) / n_total - time.monotonic()))
        w.start(frames)
    for w in workers:
        w.join(3600)
    producer.flush(timeout=60)
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    producer.close(timeout=10)
    out.put(
        {
            "sent": producer.sent,
            "acked": producer.acked,
            "dropped": sum(w.stats.dropped for w in workers),
            "failed": sum(w.stats.failed for w in workers),
            # Cameras the edge itself warned about (backlog past edge.lag_warn_ms: vad/edge/lag.py).
            "warned": sum(w.stats.lag is not None and w.stats.lag.episodes > 0 for w in workers),
            "errors": [repr(w.error) for w in workers if w.error is not None],
            "cpu_s": cpu,
            "wall_s": wall,
        }
    )


def _lags(pairs: list[tuple[float, float]]) -> np.ndarray:
    if not pairs:
        return np.zeros(0)
    a = np.asarray(pairs, dtype=np.float64)
    keep = a[:, 0] >= a[:, 0].min() + WARMUP_MS  # the process's first records: imports, DIS set-up
    return a[keep, 1] - a[keep, 0]


def _pct(x: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(x, q)), 1) if x.size else None


def run_point(env: dict[str, str], all_clips: list[Path], cameras: int, procs: int, frames: int) -> dict:
    from bench.common import machine_cpu_s
    from vad.config import load_config

    sources = [str(all_clips[i % len(all_clips)]) for i in range(cameras)]
    ctx = mp.get_context("spawn")  # a clean interpreter per edge process, as a real deployment has
    q = ctx.Queue()
    split = np.array_split(np.arange(cameras), procs)
    m0, w0 = machine_cpu_s(), time.monotonic()
    ps = [
        ctx.Process(target=_part, args=(env, [sources[i] for i in idx], int(idx[0]), cameras, frames, q))
        for idx in split
    ]
    try:
        for p in ps:
            p.start()
        parts = [q.get(timeout=600) for _ in ps]  # queue.Empty if an edge process died without a result
    finally:
        for p in (p for p in ps if p.pid is not None):  # started ones only
            p.join(30)
            if p.is_alive():
                p.kill()
    machine = (machine_cpu_s() - m0) / (time.monotonic() - w0)
    send = np.concatenate([_lags(p["sent"]) for p in parts])
    ack = np.concatenate([_lags(p["acked"]) for p in parts])
    period_ms = 1000.0 * frame_period_s(load_config(env=env).edge)
    dropped = sum(p["dropped"] for p in parts)
    return {
        "cameras": cameras,
        "procs": procs,
        "records": int(sum(len(p["sent"]) for p in parts)),
        "dropped": dropped,
        "failed": sum(p["failed"] for p in parts),
        "errors": [e for p in parts for e in p["errors"]],
        "cameras_warned_behind": sum(p["warned"] for p in parts),
        "send_lag_ms_p50_p99_max": [_pct(send, 50), _pct(send, 99), _pct(send, 100)],
        "ack_lag_ms_p50_p99": [_pct(ack, 50), _pct(ack, 99)],
        "edge_cores": round(sum(p["cpu_s"] for p in parts) / max(p["wall_s"] for p in parts), 2),
        "machine_cores": round(machine, 2),
        "kept_up": bool(dropped == 0 and send.size and np.percentile(send, 99) <= period_ms),
    }


def _edge_override(text: str) -> tuple[str, str]:
    field, sep, value = text.partition("=")
    if not sep or not field:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FIELD=VALUE")
    return field, value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, nargs="+", default=[8, 16, 32, 48])
    p.add_argument("--procs", type=int, nargs="+", default=[1])
    p.add_argument("--data", type=Path, default=PED2)
    p.add_argument("--frames", type=int, default=150, help="frames per camera (15 s at 10 fps)")
    p.add_argument(
        "--edge",
        action="append",
        default=[],
        type=_edge_override,
        metavar="FIELD=VALUE",
        help="an edge setting for every camera, e.g. flow_scale=0.25",
    )
    args = p.parse_args(argv)
    overrides = dict(args.edge)

    from bench import common

    env = {**common.bench_env("edgelive"), "VAD_EDGE__PROGRESS": "false", "VAD_EDGE__STATS_EVERY_S": "3600"}
    env.update({f"VAD_EDGE__{k.upper()}": v for k, v in overrides.items()})
    try:
        cfg = common.config(env)  # a bad --edge is refused here, with its field, before a server starts
    except ValueError as e:  # ConfigError
        p.error(str(e))
    found = clips(args.data, args.frames)
    common.stack_up()
    points = []
    try:
        from vad.kafka_clients import ensure_topics

        ensure_topics(cfg.kafka)
        for n in args.cameras:
            for k in args.procs:
                if k > n:
                    continue
                r = run_point(env, found, n, k, args.frames)
                print(json.dumps(r), file=sys.stderr, flush=True)
                points.append(r)
    finally:
        print(f"stack down: {common.stack_down()}", file=sys.stderr)
    out = {
        "edge_live": points,
        "data": str(args.data),
        "frame_size": _frame_size(found[0]),
        "edge_overrides": overrides,
        "target_fps": cfg.edge.target_fps,
        "cpus": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    res = REPO / "bench" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / time.strftime("edge-live-%Y%m%d-%H%M%S.json", time.gmtime())).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
