"""`vad evaluate`: frame-level and event-level accuracy of a model on labelled clips.

Scores are computed by the streaming job's own code path and are causal: edge features
(vad.edge.clips, the producer's extractor) -> windows of the last T grids (vad.windows, as in the job's
state) -> the ONNX model (models.onnx_session, as in the job) -> the per-camera EpisodeDetector
(vad.detect, as in the job), whose exponential moving average is the frame score. Nothing looks ahead
and nothing is normalised per video.

Definitions:
- frame_auc / pr_auc / eer / f1: over all frames of all clips pooled, on the smoothed score; with a
  sampling camera (``sample_every``, ``target_fps``) a frame the edge skipped keeps the score of the
  last sampled frame before it, so every labelled frame counts (measured on Ped2 test 1-6 with
  ``sample_every: 2``: 0.968 over 1,020 frames; laying 510 scores over the first 510 labels instead
  gave 0.672);
- an event is a detector episode (OPEN..CLOSE); a *false alarm* is an event that overlaps no labelled
  interval; false_alarms_per_hour = false alarms / hours of video whose frames are labelled normal;
- event_recall: share of labelled intervals overlapped by at least one event;
- mean_delay_s: from the start of a detected interval to the OPEN of the first event overlapping it
  (0 when an event was already open), in seconds at the labels' fps; ``first_alert_delay_s`` is the
  same figure under the name the event-quality goals use, ``median_first_alert_delay_s`` its median
  (a mean over a few intervals is one slow one's), and ``per_clip`` gives each interval's
  (``first_alert_delays_s``, null where no event overlaps it);
- episodes_per_interval: mean number of events overlapping each labelled interval (1 is one alert
  per real event; an interval no event overlaps counts 0, so read it beside event_recall);
- false_episodes_per_hour: events overlapping no labelled interval, per hour of normal video (the
  same count as false_alarms_per_hour).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.card import ModelCard, card_path
from models.onnx_session import OnnxScorer
from vad.config import Config
from vad.detect import CameraState, EpisodeDetector
from vad.edge.clips import clip_samples, list_clips
from vad.windows import clip_windows

log = logging.getLogger(__name__)


@dataclass
class ClipResult:
    name: str
    labels: np.ndarray  # 0/1 per frame
    scores: np.ndarray  # causal smoothed score per frame
    raw: np.ndarray  # model frame score per sampled frame
    events: list[tuple[int, int, int]]  # (start_frame, open_frame, end_frame), 0-based
    intervals: list[tuple[int, int]]  # labelled anomalous intervals, 0-based inclusive


def clip_result(
    name: str,
    smoothed: np.ndarray,
    raw: np.ndarray,
    events: list[tuple[int, int, int]],
    intervals: list[tuple[int, int]],
    positions: np.ndarray,
    frames: int,
) -> ClipResult:
    """Scores and episodes of a clip's sampled frames laid over all its frames, as labels count them:
    a frame the edge sampled out keeps the score of the last sampled frame before it (what a live
    detector shows then), and episodes start, open and end at their sampled frames' positions."""
    if len(smoothed) != len(positions):
        raise ValueError(f"{name}: {len(smoothed)} scores for {len(positions)} sampled frames")
    held = np.maximum(np.searchsorted(positions, np.arange(frames), side="right") - 1, 0)
    y = np.zeros(frames, np.int8)
    for a, b in intervals:
        y[max(a, 0) : b + 1] = 1
    placed = [tuple(int(positions[i]) for i in ev) for ev in events]
    return ClipResult(name, y, smoothed[held], raw, placed, intervals)


def load_labels(path: Path) -> tuple[dict[str, list[tuple[int, int]]], float]:
    data = json.loads(path.read_text())
    clips = {name: [(a - 1, b - 1) for a, b in c.get("anomalous_frames", [])] for name, c in data["clips"].items()}
    return clips, float(data.get("fps", 10.0))


def frame_times_ms(positions: np.ndarray, fps: float) -> np.ndarray:
    """Event time of each sampled frame (ms from the clip's start), as the edge stamps a file's frames:
    the detector's durations are in event time."""
    return np.round(np.asarray(positions, np.float64) * 1000.0 / fps).astype(np.int64)


def detect_clip(
    name: str, raw: np.ndarray, cells: np.ndarray | None, detector: EpisodeDetector, ts_ms: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The job's detector over one clip's model scores at their event times: (smoothed score per
    frame, episodes as (start, open, end) frames), the clip's end closing what is still open."""
    if len(ts_ms) != len(raw):
        raise ValueError(f"{name}: {len(raw)} scores for {len(ts_ms)} frame times")
    st, smoothed, events, open_at = CameraState(), [], [], {}
    for i, s in enumerate(raw):
        for e in detector.step(st, name, i, int(ts_ms[i]), float(s), None if cells is None else cells[i]):
            if e.phase == "open":
                open_at[e.event_id] = i
            elif e.phase == "close":
                events.append((e.start_frame, open_at[e.event_id], e.end_frame))
        smoothed.append(st.ema)
    for e in detector.close(st, name, reason="idle"):  # as the job closes at the end of a bounded input
        events.append((e.start_frame, open_at[e.event_id], e.end_frame))
    return np.asarray(smoothed, np.float64), events


def score_clip(
    name: str, grids: np.ndarray, scorer: OnnxScorer, detector: EpisodeDetector, window: int, ts_ms: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
    raw, cells = scorer.score(clip_windows(grids, window))
    smoothed, events = detect_clip(name, raw, cells, detector, ts_ms)
    return smoothed, raw.astype(np.float64), events


def _overlaps(ev: tuple[int, int, int], iv: tuple[int, int]) -> bool:
    return ev[0] <= iv[1] and ev[2] >= iv[0]


def _first_alert_s(r: ClipResult, iv: tuple[int, int], fps: float) -> float | None:
    """Seconds from the interval's start to the OPEN of the first event overlapping it (None: none)."""
    opens = [ev[1] for ev in r.events if _overlaps(ev, iv)]
    return max(0, min(opens) - iv[0]) / fps if opens else None


def metrics(results: list[ClipResult], fps: float) -> dict:
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    y = np.concatenate([r.labels for r in results])
    s = np.concatenate([r.scores for r in results])
    both = 0 < y.sum() < len(y)
    out: dict = {"frames": len(y), "clips": len(results)}
    if both:
        fpr, tpr, _ = roc_curve(y, s)
        i = int(np.argmin(np.abs(fpr - (1 - tpr))))
        p, r, _ = precision_recall_curve(y, s)
        f1 = np.max(2 * p * r / np.maximum(p + r, 1e-12))
        out.update(
            frame_auc=float(roc_auc_score(y, s)),
            pr_auc=float(average_precision_score(y, s)),
            eer=float((fpr[i] + 1 - tpr[i]) / 2),
            f1=float(f1),
        )
    else:
        out.update(frame_auc=None, pr_auc=None, eer=None, f1=None)
    false_alarms = sum(1 for r in results for ev in r.events if not any(_overlaps(ev, iv) for iv in r.intervals))
    normal_hours = float((y == 0).sum()) / fps / 3600
    intervals = [(r, iv) for r in results for iv in r.intervals]
    episodes = [sum(_overlaps(ev, iv) for ev in r.events) for r, iv in intervals]
    delays = [d for d in (_first_alert_s(r, iv, fps) for r, iv in intervals) if d is not None]
    false_per_hour = false_alarms / normal_hours if normal_hours > 0 else None
    mean_delay = float(np.mean(delays)) if delays else None
    out.update(
        false_alarms=false_alarms,
        false_alarms_per_hour=false_per_hour,
        false_episodes_per_hour=false_per_hour,
        event_recall=len(delays) / len(intervals) if intervals else None,
        episodes_per_interval=float(np.mean(episodes)) if episodes else None,
        mean_delay_s=mean_delay,
        first_alert_delay_s=mean_delay,
        median_first_alert_delay_s=float(np.median(delays)) if delays else None,
    )
    return out


def per_clip(results: list[ClipResult], fps: float) -> dict:
    from sklearn.metrics import roc_auc_score

    out = {}
    for r in results:
        auc = float(roc_auc_score(r.labels, r.scores)) if 0 < r.labels.sum() < len(r.labels) else None
        delays = [_first_alert_s(r, iv, fps) for iv in r.intervals]
        out[r.name] = {"frames": len(r.labels), "auc": auc, "events": len(r.events), "first_alert_delays_s": delays}
    return out


def plot(results: list[ClipResult], threshold: float, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    out.mkdir(parents=True, exist_ok=True)
    y = np.concatenate([r.labels for r in results])
    s = np.concatenate([r.scores for r in results])
    paths = []
    if 0 < y.sum() < len(y):
        fpr, tpr, _ = roc_curve(y, s)
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        ax.plot(fpr, tpr)
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, all frames pooled")
        fig.tight_layout()
        fig.savefig(out / "roc.png", dpi=100)
        plt.close(fig)
        paths.append(out / "roc.png")
    for r in results:
        fig, ax = plt.subplots(figsize=(8, 2.4))
        for a, b in r.intervals:
            ax.axvspan(a, b, color="tab:red", alpha=0.15, lw=0)
        for st, _op, en in r.events:
            ax.axvspan(st, en, ymin=0, ymax=0.05, color="tab:orange")
        ax.plot(r.scores, lw=1.2, label="causal score")
        ax.axhline(threshold, color="k", lw=0.8, ls="--", label="threshold")
        ax.set(title=f"{r.name}: labelled anomalies shaded, events as orange bars", xlabel="frame")
        ax.legend(loc="upper left", fontsize=7)
        fig.tight_layout()
        p = out / f"timeline_{r.name}.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        paths.append(p)
    return paths


def evaluate(data: Path, model_path: Path, cfg: Config, out: Path | None = None, raw: dict | None = None) -> dict:
    """In-process evaluation; ``raw``, if given, receives each clip's model frame scores."""
    labels, fps = load_labels(data / "labels.json")
    card = ModelCard.load(card_path(model_path))
    threshold = card.detection_threshold(cfg.detect)
    detector = EpisodeDetector(cfg.detect, threshold, card.model_version)
    scorer = OnnxScorer(model_path)
    edge = card.edge_config(cfg.edge)  # features exactly as the model was trained on
    results = []
    for clip in list_clips(data / "test"):
        if clip.stem not in labels:
            raise ValueError(f"{clip.name} has no entry in {data / 'labels.json'}")
        sampled = clip_samples(clip, edge)
        if card.frame_size is not None and sampled.size != card.frame_size:
            raise ValueError(
                f"{clip}: {sampled.size[0]}x{sampled.size[1]} frames, but the model was trained on "
                f"{card.frame_size[0]}x{card.frame_size[1]}: its scales are in those pixels"
            )
        ts = frame_times_ms(sampled.positions, fps)
        smoothed, frame_raw, events = score_clip(clip.stem, sampled.grids, scorer, detector, card.window, ts)
        r = clip_result(clip.stem, smoothed, frame_raw, events, labels[clip.stem], sampled.positions, sampled.frames)
        results.append(r)
        if raw is not None:
            raw[clip.stem] = frame_raw
        log.info("%s: %d frames (%d sampled), %d events", clip.stem, sampled.frames, len(frame_raw), len(events))
    report = {**metrics(results, fps), "threshold": threshold, "per_clip": per_clip(results, fps)}
    if out is not None:
        report["plots"] = [str(p) for p in plot(results, threshold, out)]
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
