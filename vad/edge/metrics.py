"""Prometheus metrics of an edge process, read from its cameras' counters when scraped.

Off unless ``edge.metrics_port`` is set. The collector reads each camera's CameraStats (and its
LagWatch) at scrape time, so the capture and send threads keep writing their plain counters and
pay nothing for the endpoint. Names carry the camera as a label:

    vad_edge_frames_read_total, vad_edge_frames_sampled_total, vad_edge_frames_corrupt_total,
    vad_edge_records_{queued,sent,failed,dropped}_total, vad_edge_gaps_total,
    vad_edge_reconnects_total, vad_edge_camera_motion_frames_total, vad_edge_stage_cpu_seconds_total{stage},
    vad_edge_blind_frames_total, vad_edge_blind_episodes_total, vad_edge_blind (0/1: the picture has
    been flat for edge.blind_after_s, vad/edge/blind.py; cameras with the check on only),
    vad_edge_camera_running (its capture thread is alive: 0 once it ended or gave up reconnecting),
    and for paced cameras (live, --realtime files): vad_edge_send_lag_seconds,
    vad_edge_backlog_seconds, vad_edge_behind (0/1), vad_edge_behind_episodes_total.

The process's own CPU and memory come with them (prometheus_client's process collector).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from vad.edge.stats import CameraStats

# (metric name without _total, CameraStats field, help)
COUNTERS = (
    ("frames_read", "read", "Frames decoded."),
    ("frames_sampled", "sampled", "Frames kept by sampling (features computed)."),
    ("frames_corrupt", "corrupt", "Frames that could not be decoded (skipped)."),
    ("records_queued", "queued", "Records handed to the send queue."),
    ("records_sent", "sent", "Records acknowledged by the broker."),
    ("records_failed", "failed", "Records the broker did not acknowledge."),
    ("records_dropped", "dropped", "Records dropped because the send queue was full."),
    ("gaps", "gaps", "Records sent with the GAP flag (the job resets the camera's window)."),
    ("reconnects", "reconnects", "Reconnects of the camera's stream."),
    (
        "camera_motion_frames",
        "camera_motion",
        "Frames whose flow had the camera's own motion (shake, sway, pans) subtracted.",
    ),
    ("blind_frames", "blind_frames", "Sampled frames while the camera was blind (a flat picture)."),
    ("blind_episodes", "blind_episodes", "Times the camera went blind."),
)


class Camera(Protocol):
    camera_id: str
    stats: CameraStats

    @property
    def running(self) -> bool: ...


class EdgeCollector(Collector):
    def __init__(self, cameras: Iterable[Camera]):
        self._cameras = list(cameras)

    def collect(self) -> Iterator[Metric]:
        cams = self._cameras
        for name, field, doc in COUNTERS:
            m = CounterMetricFamily(f"vad_edge_{name}", doc, labels=["camera"])
            for c in cams:
                m.add_metric([c.camera_id], getattr(c.stats, field))
            yield m
        stage = CounterMetricFamily(
            "vad_edge_stage_cpu_seconds", "CPU (thread time) per pipeline stage.", labels=["camera", "stage"]
        )
        running = GaugeMetricFamily("vad_edge_camera_running", "1 while the camera's capture runs.", labels=["camera"])
        blind = GaugeMetricFamily(
            "vad_edge_blind", "1 while the camera's picture has been flat for edge.blind_after_s.", labels=["camera"]
        )
        for c in cams:
            for k, v in list(c.stats.stage_s.items()):
                stage.add_metric([c.camera_id, k], v)
            running.add_metric([c.camera_id], float(c.running))
            if c.stats.blind is not None:  # a camera whose check is off has no such state
                blind.add_metric([c.camera_id], float(c.stats.blind))
        yield stage
        yield running
        yield blind
        yield from self._lag(cams)

    @staticmethod
    def _lag(cams: list[Camera]) -> Iterator[Metric]:
        labels = ["camera"]
        lag = GaugeMetricFamily(
            "vad_edge_send_lag_seconds", "Latest record's hand-over to Kafka minus its event time.", labels=labels
        )
        backlog = GaugeMetricFamily(
            "vad_edge_backlog_seconds", "Send lag above the connection's lowest (vad/edge/lag.py).", labels=labels
        )
        behind = GaugeMetricFamily(
            "vad_edge_behind", "1 while the backlog is past edge.lag_warn_ms (until under half).", labels=labels
        )
        episodes = CounterMetricFamily("vad_edge_behind_episodes", "Times the camera fell behind.", labels=labels)
        for c in cams:
            w = c.stats.lag
            if w is None:  # a backfilled file has no pace to keep
                continue
            lag.add_metric([c.camera_id], w.last_ms / 1000.0)
            backlog.add_metric([c.camera_id], w.backlog_ms / 1000.0)
            behind.add_metric([c.camera_id], float(w.behind))
            episodes.add_metric([c.camera_id], w.episodes)
        yield from (lag, backlog, behind, episodes)


class MetricsServer:
    """The HTTP endpoint (``/metrics``) on its own registry; ``close()`` stops it and frees the port."""

    def __init__(self, host: str, port: int, cameras: Iterable[Camera]):
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EdgeCollector(cameras))
        ProcessCollector(registry=self.registry)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            # RuntimeError, as for an unreachable broker: the CLI reports it in one line and exits.
            raise RuntimeError(f"edge.metrics_port, edge.metrics_host: cannot serve on {host}:{port}: {e}") from e
        self.url = f"http://{host}:{self._server.server_port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
