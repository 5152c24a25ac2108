"""Edge producer: read video sources, compute motion features, publish records keyed by camera.

Raw frames never leave this process; only the compact feature records do.

Per camera, two threads and a bounded queue between them:

    capture thread: decode -> sample -> features -> encode -> queue (bounded)
    send thread:    queue -> KafkaProducer.send (batching, linger, compression, acks=all)

so a slow or unreachable broker never stalls decoding of a live camera without bound. Queue policy
(**drop newest**): a record that finds the queue full after waiting ``queue_block_ms`` (live
sources, realtime files) or ``send_timeout_s`` (files backfilled as fast as possible, where
waiting loses nothing) is dropped and counted in ``dropped``; the next record that is queued
carries FLAG_GAP so the job resets that camera's window instead of scoring across the hole. So does
the first record of every stream (a new process starts its frame index at 0 again: the job takes
it as a new stream, vad/detect.py), and the next record handed to Kafka after a delivery failure
(records already handed over when the failure is reported are sent as they are: the job finds
that hole by the skipped frame index, ``vad.detect.starts_afresh``).

A paced camera (live, or a ``--realtime`` file) that falls behind its frame rate is warned about
once per episode, and its counters are logged as warnings while it lasts (vad/edge/lag.py). With
``edge.metrics_port`` set, the counters are also served to Prometheus (vad/edge/metrics.py).

``sent`` counts broker acknowledgements (delivery callbacks), ``failed`` delivery errors (and records
not acknowledged at close): at the end sent + failed + dropped == sampled, less the frames whose
features failed (counted in ``corrupt``). SIGTERM and SIGINT stop capture, then the queues are
drained and the producer flushed and closed.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from vad.config import Config, EdgeSettings
from vad.edge.blind import BlindWatch, blind_watch
from vad.edge.digest import describe, settings_digest
from vad.edge.features import make_extractor
from vad.edge.lag import LagWatch
from vad.edge.sources import SourceError, redact, source_kind
from vad.edge.stall import MARGIN_S as STALL_MARGIN_S
from vad.edge.stall import StallWatch
from vad.edge.stats import CameraStats
from vad.edge.stream import CameraStream, Opener, sampled_frames
from vad.schema import FLAG_GAP, FrameFeatures, validate_camera_id, with_gap

log = logging.getLogger(__name__)
_DONE = object()


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (only the main thread may install handlers; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _stop(signum, _frame):
        log.info("signal %s: stopping capture, flushing", signum)
        stop.set()

    old = {s: signal.signal(s, _stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class CameraWorker:
    """One camera: a capture thread feeding a send thread through a bounded queue."""

    def __init__(self, cfg: Config, camera_id: str, source: str, settings: EdgeSettings, producer, stop, opener=None):
        validate_camera_id(camera_id)
        self.cfg, self.camera_id, self.settings, self.producer, self.stop = cfg, camera_id, settings, producer, stop
        self.edge_digest = settings_digest(settings)  # tells the job which settings the features come from
        self.stats = CameraStats(camera_id)
        kw = {"opener": opener} if opener is not None else {}
        self.stream = CameraStream(source, settings, self.stats, stop, **kw)  # SourceError now, not later
        if self.stream.live or settings.realtime:  # a backfilled file has no pace to keep
            self.stats.lag = LagWatch(cfg.edge.lag_warn_ms)
        self.error: BaseException | None = None
        self._q: queue.Queue = queue.Queue(maxsize=cfg.edge.queue_size)
        self._key = camera_id.encode()
        self._threads: list[threading.Thread] = []
        # Set by a delivery failure (kafka-python's I/O thread or the send thread), taken by the send
        # thread for the next record it hands over.
        self._gap_lock = threading.Lock()
        self._gap_next = False
        self.handed = 0  # records handed to the Kafka client (vad/edge/stall.py)

    def start(self, limit: int | None = None, position: int = 0) -> CameraWorker:
        self._threads = [
            threading.Thread(
                target=self._capture, args=(limit, position), name=f"capture-{self.camera_id}", daemon=True
            ),
            threading.Thread(target=self._send, name=f"send-{self.camera_id}", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    @property
    def running(self) -> bool:
        """The capture thread is alive (false before start, at the end, after giving up)."""
        return bool(self._threads) and self._threads[0].is_alive()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # -- capture ---------------------------------------------------------------------------------
    def _capture(self, limit: int | None, position: int) -> None:
        try:
            self._capture_loop(limit, position)
        except Exception as e:  # reported by the caller, never lost in a thread
            self.error = e
            log.error("camera %s: %s", self.camera_id, e)
        finally:
            self._q.put(_DONE)  # the sender drains what is queued, then stops

    def _capture_loop(self, limit: int | None, position: int) -> None:
        cfg, st, edge = self.settings, self.stats, self.cfg.edge
        ex = make_extractor(cfg, self.cfg.mask_for(self.camera_id))
        blind = blind_watch(cfg)
        st.blind = False if blind is not None else None
        block_s = edge.queue_block_ms / 1000.0 if (self.stream.live or cfg.realtime) else edge.send_timeout_s
        bar = self._progress_bar(position)
        # The first record is flagged: a restarted edge begins again at frame 0 and the job must not
        # take it for a late frame of the stream before, nor score a window across the restart.
        pending_gap, next_log, frame_index = True, time.monotonic() + edge.stats_every_s, 0
        try:
            for s in sampled_frames(self.stream):
                if s.gap:
                    ex.reset()
                try:
                    feats = ex.process(s.gray, s.step_ms)
                except Exception as e:  # cv2.error on a malformed frame: skip, count
                    st.corrupt += 1
                    ex.reset()
                    pending_gap = True
                    log.debug("camera %s: frame skipped: %s", self.camera_id, e)
                    continue
                st.camera_motion = ex.camera_motion_frames
                if blind is not None:
                    self._watch_blind(blind, s.gray, s.ts_ms, s.gap)
                t0 = time.thread_time()
                flags = FLAG_GAP if (s.gap or pending_gap) else 0
                rec = FrameFeatures(
                    self.camera_id,
                    frame_index,
                    s.ts_ms,
                    s.gray.shape[1],
                    s.gray.shape[0],
                    feats,
                    flags,
                    edge_digest=self.edge_digest,
                )
                value = rec.encode(self.cfg.edge.wire_precision)
                st.add_time("encode", time.thread_time() - t0)
                frame_index += 1
                # st.reconnects names the connection: a reconnect re-anchors event time (lag.py).
                if self._offer((value, rec.ts_ms, st.reconnects), block_s):
                    st.queued += 1
                    if flags:  # under the lock: the send thread counts the gaps it flags
                        st.bump("gaps")
                    pending_gap = False
                else:
                    st.bump("dropped")
                    pending_gap = True
                if bar is not None:
                    bar.update(st.read - bar.n)
                if time.monotonic() >= next_log:
                    next_log = time.monotonic() + edge.stats_every_s
                    behind = st.lag is not None and st.lag.behind  # repeated while it lasts
                    log.log(logging.WARNING if behind else logging.INFO, "camera %s: %s", self.camera_id, st.as_dict())
                if limit is not None and st.sampled >= limit:
                    break
        finally:
            for k, v in ex.timings.items():
                st.add_time(k, v)
            if bar is not None:
                bar.close()

    def _watch_blind(self, w: BlindWatch, gray, ts_ms: int, gap: bool) -> None:
        st = self.stats
        blind = w.update(gray, ts_ms, gap)
        st.blind_frames, st.blind_episodes = w.frames, w.episodes
        st.blind = blind  # after the counters, so a scrape never sees it blind with the episode uncounted
        if not w.changed:
            return
        if w.blind:
            log.warning(
                "camera %s cannot see: its picture has been flat for %g s (grey-level spread %.1f, under "
                "edge.blind_contrast %g): covered, dark or washed out; its features score as no motion",
                self.camera_id,
                w.after_ms / 1000,
                w.last_contrast,
                w.min_contrast,
            )
        else:
            log.warning("camera %s sees again (grey-level spread %.1f)", self.camera_id, w.last_contrast)

    def _offer(self, item, block_s: float) -> bool:
        try:
            if block_s <= 0:
                self._q.put_nowait(item)
            else:
                self._q.put(item, timeout=block_s)
            return True
        except queue.Full:
            return False

    def _progress_bar(self, position: int):
        if not self.cfg.edge.progress or self.stream.kind != "file" or self.stream.live:
            return None
        from tqdm import tqdm

        return tqdm(total=self.stream.frame_count, desc=self.camera_id, unit="frame", position=position, leave=False)

    # -- send ------------------------------------------------------------------------------------
    def _send(self) -> None:
        topic, st = self.cfg.kafka.topics.features, self.stats

        def ok(_meta):
            st.bump("sent")

        def failed(exc):
            st.bump("failed")
            with self._gap_lock:
                self._gap_next = True
            log.error("camera %s: delivery failed: %s", self.camera_id, exc)

        while True:
            item = self._q.get()
            if item is _DONE:
                return
            value, ts_ms, connection = item
            if self._gap_next and self._take_gap():  # the lock only when a failure was reported
                flagged = with_gap(value)  # the same object when it carries the flag already
                if flagged is not value:
                    value = flagged
                    st.bump("gaps")
            if st.lag is not None:
                self._watch_lag(st.lag, ts_ms, connection)
            t0 = time.thread_time()
            self.handed += 1
            try:
                fut = self.producer.send(topic, key=self._key, value=value, timestamp_ms=ts_ms)
                fut.add_callback(ok)
                fut.add_errback(failed)
            except Exception as e:  # e.g. KafkaTimeoutError: buffer full past max_block_ms
                failed(e)
            st.add_time("produce", time.thread_time() - t0)

    def _take_gap(self) -> bool:
        with self._gap_lock:
            gap, self._gap_next = self._gap_next, False
        return gap

    def _watch_lag(self, watch: LagWatch, ts_ms: int, connection: int) -> None:
        change = watch.observe(ts_ms, time.time() * 1000.0, connection)
        if change == "behind":
            log.warning(
                "camera %s: falling behind its frame rate: frames reach the Kafka client %.0f ms later than at"
                " the start of the connection (edge.lag_warn_ms %d): this process does not keep up with its"
                " cameras (per-stage ms and `dropped` in its counters say where); fewer cameras per process,"
                " a lower target_fps or flow_scale",
                self.camera_id,
                watch.backlog_ms,
                watch.limit_ms,
            )
        elif change == "caught_up":
            log.info(
                "camera %s: caught up after %.1f s behind (worst backlog %.0f ms)",
                self.camera_id,
                watch.episode_s,
                watch.episode_max_ms,
            )


def linger_for(cfg: Config, cameras: list[tuple[str, str, EdgeSettings]]) -> int:
    """The producer's linger: the backfill one only when every source is a file read as fast as it
    decodes; a live camera (or a --realtime file) must not wait for a batch that will not fill."""
    backfill = all(source_kind(src) == "file" and not st.realtime for _, src, st in cameras)
    return cfg.edge.backfill_linger_ms if backfill else cfg.edge.linger_ms


def _make_producer(cfg: Config, linger_ms: int):
    from vad.kafka_clients import make_producer

    timeout_ms = int(cfg.edge.delivery_timeout_s * 1000)
    return make_producer(cfg.kafka, linger_ms, cfg.edge.compression, delivery_timeout_ms=timeout_ms)


def run_cameras(
    cfg: Config,
    cameras: list[tuple[str, str, EdgeSettings]],
    limit: int | None = None,
    producer=None,
    opener: Opener | None = None,
    stop: threading.Event | None = None,
) -> list[CameraWorker]:
    """Run (camera id, source, settings) workers to the end of their sources, or until a signal.
    A camera's mask is its ``cameras.<id>.mask`` in ``cfg``, as in the job.

    Every source is opened before anything is sent, so a bad path or URL fails at start (SourceError).
    Returns the workers; their ``stats`` and ``error`` say how each camera went.
    """
    stop = stop or threading.Event()
    workers: list[CameraWorker] = []
    metrics = None
    own = producer is None
    try:
        for cam_id, source, settings in cameras:
            workers.append(CameraWorker(cfg, cam_id, source, settings, producer, stop, opener))
        if cfg.edge.metrics_port is not None:  # before Kafka: a port in use fails at start
            metrics = _serve_metrics(cfg, workers)
        if own:
            try:
                producer = _make_producer(cfg, linger_for(cfg, cameras))
            except Exception as e:
                raise RuntimeError(f"cannot connect to Kafka at {cfg.kafka.bootstrap_servers}: {e}") from e
    except BaseException:
        for w in workers:
            w.stream.cap.close()
        if metrics is not None:
            metrics.close()
        raise
    try:
        _run(cfg, workers, producer, own, limit, stop)
    finally:
        if metrics is not None:
            metrics.close()
    return workers


def _serve_metrics(cfg: Config, workers: list[CameraWorker]):
    from vad.edge.metrics import MetricsServer

    server = MetricsServer(cfg.edge.metrics_host, cfg.edge.metrics_port, workers)
    log.info("edge metrics on %s", server.url)
    return server


def _run(cfg: Config, workers: list[CameraWorker], producer, own: bool, limit: int | None, stop) -> None:
    for w in workers:
        w.producer = producer
    with stop_on_signals(stop):
        for i, w in enumerate(workers):
            log.info(
                "camera %s: reading %s, edge digest %d (%s)",
                w.camera_id,
                redact(w.stream.source),
                w.edge_digest,
                describe(w.settings),
            )
            w.start(limit, position=i)
        # Wait in short slices so the main thread keeps handling signals.
        watch, stuck = StallWatch(cfg.edge.delivery_timeout_s + STALL_MARGIN_S), 0
        while any(t.is_alive() for w in workers for t in w._threads):
            time.sleep(0.1)
            done = sum(w.stats.sent + w.stats.failed for w in workers)
            stuck = stuck or watch.stuck(sum(w.handed for w in workers), done)
            if stuck and not stop.is_set():
                log.error(
                    "the Kafka client has reported no delivery for %.0f s with %d records outstanding: it is"
                    " stuck (kafka-python's idempotent producer after a long broker outage); ending, exit"
                    " status 1, so the process is restarted (its first record is flagged GAP)",
                    watch.limit_s,
                    stuck,
                )
                stop.set()
            if stop.is_set():
                for w in workers:
                    w.join(cfg.edge.send_timeout_s)
                break
    try:
        if not stuck:  # a stuck client would hold the flush for its whole bound
            producer.flush(timeout=cfg.edge.send_timeout_s)
    except Exception as e:  # counted below as unacknowledged records
        log.error("flush did not complete: %s", e)
    finally:
        if own:
            _close(producer, 0 if stuck else 10)
    for w in workers:
        unacked = w.stats.queued - w.stats.sent - w.stats.failed
        if unacked > 0:
            w.stats.bump("failed", unacked)
            log.error("camera %s: %d records not acknowledged before close", w.camera_id, unacked)
        log.info("camera %s done: %s", w.camera_id, w.stats.as_dict())


def _close(producer, timeout_s: float) -> None:
    """kafka-python's close flushes first and raises if records are still pending: they are counted
    as failed by the caller, and its I/O thread (a daemon) ends with the process."""
    try:
        producer.close(timeout=timeout_s)
    except Exception as e:
        log.error("the Kafka client did not close cleanly: %s", e)


def _settings(cfg: Config, cam, realtime: bool | None) -> EdgeSettings:
    s = cfg.edge.settings_for(cam)
    return s if realtime is None else s.model_copy(update={"realtime": realtime})


def produce(
    cfg: Config, camera_id: str, source: str | None = None, limit: int | None = None, realtime: bool | None = None
) -> CameraStats:
    """Stream one camera (its ``cameras.<id>`` entry applies when it is listed there). Raises SourceError."""
    cam = cfg.camera(camera_id)
    source = source or (cam.source if cam is not None else None)
    if not source:
        raise SourceError(f"camera {camera_id!r} has no source: pass --source or set cameras.{camera_id}.source")
    (w,) = run_cameras(cfg, [(camera_id, source, _settings(cfg, cam, realtime))], limit=limit)
    if w.error is not None:
        raise w.error
    return w.stats


def produce_all(cfg: Config, limit: int | None = None, realtime: bool | None = None) -> list[CameraWorker]:
    """Every camera in ``cameras``, one worker each."""
    if not cfg.cameras:
        raise ValueError("no cameras configured: add cameras: {<id>: {source: ...}} to the config")
    missing = [cid for cid, c in cfg.cameras.items() if not c.source]
    if missing:
        raise ValueError(f"--all streams every configured camera, and these have no source: {', '.join(missing)}")
    cams = [(cid, c.source, _settings(cfg, c, realtime)) for cid, c in cfg.cameras.items()]
    return run_cameras(cfg, cams, limit=limit)
