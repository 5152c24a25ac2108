"""Shared parts of the benchmarks: the bench's own embedded stack, real Ped2 feature grids,
record production, reading the output side and committed offsets, job subprocesses and their CPU use.

Everything runs on loopback against a stack of its own (ports 39092/39093/36379, state under
.cache/bench-stack), so a bench never touches the demo's or the tests' broker.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from kafka import KafkaAdminClient

from vad.config import REPO_ROOT, Config, EdgeConfig, load_config
from vad.schema import _HEADER, HEADER_SIZE, FrameFeatures
from vadctl import stack

CACHE = REPO_ROOT / ".cache" / "bench"
CLIP = REPO_ROOT.parent / "shared" / "datasets" / "ucsd_ped2" / "test" / "Test001.mp4"
STACK_ENV = {
    "VAD_STACK__KAFKA_PORT": "39092",
    "VAD_STACK__CONTROLLER_PORT": "39093",
    "VAD_STACK__REDIS_PORT": "36379",
    "VAD_STACK__STATE_DIR": str(REPO_ROOT / ".cache" / "bench-stack"),
    "VAD_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:39092",
    "VAD_REDIS__PORT": "36379",
    "VAD_KAFKA__TOPICS__PARTITIONS": "4",
}
# Ped2 frame size; the grid itself comes from the clip.
FRAME_W, FRAME_H = 360, 240
WIRE_PRECISION = EdgeConfig.model_fields["wire_precision"].default


def bench_env(tag: str, **extra: str) -> dict[str, str]:
    """VAD_ overrides for one bench run: own topics, group, Redis prefix and checkpoint folder."""
    return {
        **STACK_ENV,
        "VAD_KAFKA__TOPICS__FEATURES": f"bench.{tag}.features",
        "VAD_KAFKA__TOPICS__EVENTS": f"bench.{tag}.events",
        "VAD_KAFKA__TOPICS__DEAD_LETTER": f"bench.{tag}.dlq",
        "VAD_KAFKA__TOPICS__SCORES": f"bench.{tag}.scores",
        "VAD_KAFKA__GROUP_ID": f"bench-{tag}",
        "VAD_REDIS__KEY_PREFIX": f"bench{tag}".replace(".", "_"),
        "VAD_JOB__CHECKPOINT_DIR": str(CACHE / "ckpt" / tag),
        "VAD_JOB__SAVEPOINT_DIR": str(CACHE / "savepoints" / tag),
        **extra,
    }


def config(env: dict[str, str]) -> Config:
    return load_config(env=env)


def ped2_grids() -> np.ndarray:
    """Real feature grids [n, 12, 18, 12] of one Ped2 clip, computed once with the edge's own code."""
    path = CACHE / "ped2_test001_grids.npy"
    if path.exists():
        return np.load(path)
    from vad.edge.clips import clip_features

    if not CLIP.exists():
        raise FileNotFoundError(f"UCSD Ped2 clip missing: {CLIP}")
    grids = clip_features(CLIP, config(STACK_ENV).edge).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, grids)
    return grids


def stack_up() -> Config:
    cfg = config(STACK_ENV)
    if all(v == "stopped" for v in stack.status(cfg).values()):
        # A fresh broker each time: every run writes its own topics (7.8 GB had piled up here after
        # an evening of runs), which slow the broker's start (log recovery) and crowd the page cache.
        shutil.rmtree(stack.state_dir(cfg), ignore_errors=True)
    stack.up(cfg)
    return cfg


def stack_down() -> dict[str, str]:
    return stack.down(config(STACK_ENV))


def record(cam: str, idx: int, ts_ms: int, grid: np.ndarray) -> bytes:
    """A simulated camera's record, as the edge sends it by default (``edge.wire_precision``)."""
    return FrameFeatures(cam, idx, ts_ms, FRAME_W, FRAME_H, grid).encode(WIRE_PRECISION)


class Records:
    """The simulated cameras' records from a fixed set of grids, each grid encoded once.

    Encoding a record costs 26-36 us of Python here; at 12,000 records/s that is ~0.4 of one of
    the machine's two cores, taken from the job under test (in a deployment the cameras' producers
    run at the edge). The grids repeat, so each one's features are encoded once with the schema's
    own encoder and a record is its header repacked with the camera, frame and time, plus the
    camera id and the encoded features: byte for byte what ``record`` gives (a unit test checks).
    Camera ids must all be ``cam_len`` bytes long, as ``camera_ids`` makes them."""

    def __init__(self, grids: np.ndarray, cam_len: int = 8):
        self.cam_len = cam_len
        now_ms = int(time.time() * 1000)  # any valid time: make() replaces it
        self.head: list[tuple] = []
        self.body: list[bytes] = []
        for g in grids:
            raw = record("c" * cam_len, 0, now_ms, g)
            self.head.append(_HEADER.unpack_from(raw, 0))
            self.body.append(raw[HEADER_SIZE + cam_len :])

    def __len__(self) -> int:
        return len(self.body)

    def make(self, cam: bytes, idx: int, ts_ms: int, grid: int) -> bytes:
        if len(cam) != self.cam_len:
            raise ValueError(f"camera id {cam!r} is not {self.cam_len} bytes")
        magic, version, flags, n, _, _, *size = self.head[grid]
        return _HEADER.pack(magic, version, flags, n, idx, ts_ms, *size) + cam + self.body[grid]


def camera_ids(n: int) -> list[str]:
    return [f"cam-{i:04d}" for i in range(n)]


def fast_producer(cfg: Config, linger_ms: int) -> Producer:
    """The simulated cameras' producer: librdkafka (confluent-kafka), not the edge's kafka-python.
    The load generator shares this 2-core machine with the job under test, and kafka-python cost
    ~0.5 of a core at 3,500 records/s (measured) that the job then did not get; in a deployment the
    cameras' producers run at the edge. lz4 and big batches; acks=1 is enough on one broker."""
    return Producer(
        {
            "bootstrap.servers": cfg.kafka.bootstrap_servers,
            "acks": 1,
            "linger.ms": linger_ms,
            "compression.type": "lz4",
            "batch.size": 1 << 20,
            "message.max.bytes": 4 << 20,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def send(prod: Producer, topic: str, cam: str, raw: bytes, ts_ms: int) -> None:
    while True:
        try:
            prod.produce(topic, value=raw, key=cam, timestamp=ts_ms)
            return
        except BufferError:  # local queue full: let librdkafka send, then retry
            prod.poll(0.05)


def fast_consumer(cfg: Config, topic: str) -> Consumer:
    """A read_committed reader of every partition of `topic` from its start (no group, no commits),
    on librdkafka for the same reason as fast_producer."""
    c = Consumer(
        {
            "bootstrap.servers": cfg.kafka.bootstrap_servers,
            "group.id": f"bench-reader-{os.getpid()}-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 20,
        }
    )
    deadline = time.monotonic() + 30
    while True:  # a topic created a moment ago may not be in the metadata yet
        meta = c.list_topics(topic, timeout=10).topics.get(topic)
        if meta is not None and meta.error is None and meta.partitions:
            break
        if time.monotonic() > deadline:
            c.close()
            raise RuntimeError(f"bench reader: topic {topic} has no partitions after 30 s")
        time.sleep(0.2)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in meta.partitions])
    return c


def _produce_part(cfg: Config, cams: list[str], offset: int, frames: int, grids: np.ndarray, t0_ms: int) -> None:
    prod = fast_producer(cfg, linger_ms=50)
    recs = Records(grids)
    ids = [(c, cam, cam.encode()) for c, cam in enumerate(cams, offset)]
    try:
        for f in range(frames):
            ts = t0_ms + f * 100
            for c, cam, cam_bytes in ids:
                send(prod, cfg.kafka.topics.features, cam, recs.make(cam_bytes, f, ts, (f + 7 * c) % len(recs)), ts)
            prod.poll(0)
    finally:
        if prod.flush(120):
            raise RuntimeError("bench producer: records left unsent after 120 s")


def produce_burst(cfg: Config, cameras: int, frames: int, grids: np.ndarray, t0_ms: int, procs: int = 2) -> int:
    """cameras x frames records, frame-major (every camera's frame i before frame i+1), 10 fps of
    event time; cameras start at different clip offsets so each batch mixes real motion values.
    Two producer processes, each with its share of the cameras (chosen when every record was
    encoded in Python; with ``Records`` one process may do, not measured)."""
    cams = camera_ids(cameras)
    step = -(-cameras // procs)
    ctx = mp.get_context("fork")
    ps = [
        ctx.Process(target=_produce_part, args=(cfg, cams[i : i + step], i, frames, grids, t0_ms))
        for i in range(0, cameras, step)
    ]
    for p in ps:
        p.start()
    for p in ps:
        p.join(timeout=300)
        if p.exitcode != 0:
            raise RuntimeError(f"producer process failed: exit {p.exitcode}")
    return cameras * frames


def _pid_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds of all its threads) of a process; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds of a process and all its live descendants (JVM, Python workers)."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or (st := _pid_stat(int(d.name))) is None:
            continue
        pid = int(d.name)
        children.setdefault(st[0], []).append(pid)
        cpu[pid] = st[1]
    total, todo = 0.0, [root]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads, not its children); 0 once gone."""
    st = _pid_stat(pid)
    return st[1] if st else 0.0


def _machine_ticks(stat: str) -> list[int]:
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user already)
    with open(stat) as f:
        return [int(x) for x in f.readline().split()[1:]]


def machine_cpu_s(stat: str = "/proc/stat") -> float:
    """Busy CPU seconds of the whole machine since boot (every state in /proc/stat but idle and
    iowait): on a shared 2-core box it tells how much of the CPU the job had to share."""
    ticks = _machine_ticks(stat)
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def machine_steal_s(stat: str = "/proc/stat") -> float:
    """CPU seconds the hypervisor gave to other guests while this one wanted them (part of
    machine_cpu_s): the shared host's share, as opposed to what runs here."""
    return _machine_ticks(stat)[7] / os.sysconf("SC_CLK_TCK")


class CpuSampler:
    """Samples (wall ms, CPU s) every 200 ms from `read` (a job's process tree: ``partial(tree_cpu_s,
    pid)``; the machine: ``machine_cpu_s``), to know the cores used in a window."""

    def __init__(self, read: Callable[[], float]):
        self.read, self.samples = read, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.samples.append((time.time() * 1000, self.read()))

    def stop(self) -> None:
        self._stop.set()
        self._t.join(timeout=5)

    def cores_between(self, t0_ms: float, t1_ms: float) -> float | None:
        s = np.array(self.samples)
        if len(s) < 2 or t1_ms <= t0_ms:
            return None
        c0, c1 = np.interp([t0_ms, t1_ms], s[:, 0], s[:, 1])
        return float((c1 - c0) / ((t1_ms - t0_ms) / 1000))


class OffsetSampler:
    """Samples (wall ms, committed offset summed over partitions) of the job's consumer group on
    its input topic every 200 ms. The Kafka source commits its offsets when a checkpoint completes,
    and a completed checkpoint means every record before it went through every operator and the
    at-least-once sinks flushed: so committed offsets count records through Kafka -> job -> sinks,
    whatever the job emits (no per-frame output topic needed). Reads only (OffsetFetch, no group
    membership), so the job's source is not disturbed."""

    def __init__(self, cfg: Config, topic: str):
        self.samples: list[tuple[float, int]] = []
        self.topic, self.group = topic, cfg.kafka.group_id
        # kafka-python's admin, not librdkafka: a librdkafka consumer that asked before the group
        # had committed anything kept answering "no offset" afterwards (seen here).
        self._admin = KafkaAdminClient(bootstrap_servers=cfg.kafka.bootstrap_servers, request_timeout_ms=10_000)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def committed(self) -> int:
        got = self._admin.list_group_offsets(self.group).get(self.group, {})
        return sum(max(om.offset, 0) for tp, om in got.items() if tp.topic == self.topic)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append((time.time() * 1000, self.committed()))
            except Exception:  # a slow broker answer: skip this sample
                continue

    @property
    def last(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def first_commit_ms(self) -> float | None:
        return next((t for t, o in self.samples if o > 0), None)

    def commits(self) -> list[tuple[float, int]]:
        """(first time seen, offset) of each new committed offset: one per completed checkpoint."""
        out: list[tuple[float, int]] = []
        for t, o in self.samples:
            if o > (out[-1][1] if out else 0):
                out.append((t, o))
        return out

    def stop(self) -> None:
        self._stop.set()
        self._t.join(timeout=10)
        self._admin.close()


def start_job(env: dict[str, str], argv: list[str], log_name: str) -> subprocess.Popen:
    """A job in its own process group (so it can be stopped whole), output to a log file."""
    CACHE.mkdir(parents=True, exist_ok=True)
    # The child keeps writing to it; our handle closes with this process.
    log = open(CACHE / f"{log_name}.log", "wb")
    return subprocess.Popen(
        [sys.executable, *argv],
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_job(proc: subprocess.Popen, grace_s: float = 10) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0
