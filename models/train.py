"""`vad train`: fit a scorer on a folder of normal clips and export ONNX plus its model card."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from models import tensors
from models.card import CARD_FORMAT, Calibration, ModelCard, card_path
from models.dwell_norms import dwell_norms
from models.scorers import baseline, convae, mil, scalep, scalep_dir
from models.tail import fit_tail
from vad.config import DetectConfig, EdgeConfig, EdgeSettings
from vad.edge.clips import clip_features, clip_samples, list_clips
from vad.schema import FEATURE_LAYOUT_VERSION, N_CHANNELS
from vad.windows import clip_windows

log = logging.getLogger(__name__)
QUANTILES = ("0.99", "0.995", "0.999", "0.9999")


class Progress:
    """Progress lines on stderr (stage, clips done / total, elapsed), one per clip: readable in a
    terminal and in a log, where a redrawn bar is not."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.monotonic()

    def __call__(self, stage: str, done: int | None = None, total: int | None = None, unit: str = "clips") -> None:
        count = f" {done}/{total} {unit}" if total is not None else ""
        print(f"vad train [{time.monotonic() - self.t0:7.1f} s] {stage}{count}", file=self.stream, flush=True)


@contextmanager
def _quiet(logger: str):
    lg = logging.getLogger(logger)
    level = lg.level
    lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        lg.setLevel(level)


def extract(folder: Path, edge: EdgeConfig, desc: str) -> dict[str, np.ndarray]:
    return {p.stem: clip_features(p, edge) for p in tqdm(list_clips(folder), desc=desc, unit="clip")}


def extract_timed(
    paths: dict[str, Path], edge: EdgeConfig, progress: Progress
) -> tuple[dict, dict, tuple[int, int] | None]:
    """Feature grids and event times (ms) of each clip, as the edge samples it, with progress, and
    the clips' frame size (width, height). Clips of another frame size than the first are refused:
    speeds are in the decoded frame's pixels (also with ``edge.resize``), so a model fitted on two
    sizes learns neither's normal speeds."""
    grids, times, first = {}, {}, None
    for i, (name, path) in enumerate(paths.items()):
        s = clip_samples(path, edge)
        first = first or (path, s.size)
        if s.size != first[1]:
            (w, h), (w0, h0) = s.size, first[1]
            raise ValueError(
                f"{path}: {w}x{h} frames, but {first[0]}: {w0}x{h0}; a model is fitted on one camera view at one "
                "frame size: train each size from a folder of its own"
            )
        grids[name], times[name] = s.grids, s.ts_ms
        progress("features: clips decoded", i + 1, len(paths))
    return grids, times, first[1] if first else None


def score_clips(
    model_path: Path, clips: dict[str, np.ndarray], window: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Causal scores of whole clips through the exported model: {clip: (frame [n], cells [n,R,C])}."""
    from models.onnx_session import OnnxScorer

    scorer = OnnxScorer(model_path)
    return {name: scorer.score(clip_windows(g, window)) for name, g in clips.items()}


def _ema(x: np.ndarray, alpha: float) -> np.ndarray:
    """The detector's causal smoothing (vad.detect), for calibrating thresholds on what it compares."""
    out, e = np.empty(len(x)), None
    for i, v in enumerate(x):
        e = v if e is None else alpha * v + (1 - alpha) * e
        out[i] = e
    return out


MODELS = {
    # name: (fit(list of clips) -> params, build(params) -> ONNX, window the model needs)
    "scalep": (lambda clips, w: scalep.fit(clips), lambda p, w: scalep.build_onnx(p, w), 1),
    "baseline": (lambda clips, w: baseline.fit(clips, w), lambda p, w: baseline.build_onnx(p, w), 8),
    "scalep_dir": (lambda clips, w: scalep_dir.fit(clips), lambda p, w: scalep_dir.build_onnx(p, w), 1),
    "convae": (lambda clips, w: convae.fit(clips, w, progress=True), lambda p, w: convae.build_onnx(p, w), 4),
}


def _fit_export(kind: str, clips: list[np.ndarray], path: Path) -> int:
    fit, build, window = MODELS[kind]
    onnx.save(build(fit(clips, window), window), path)
    return window


def read_clip_labels(data: Path, path: Path) -> dict[str, int]:
    """Clip-level labels for MIL: {"clips": {"train/Train001.mp4": 0, "test/Test002.mp4": 1, ...}},
    paths relative to the data folder."""
    import json

    raw = json.loads(Path(path).read_text())
    clips = raw.get("clips") if isinstance(raw, dict) else None
    if not isinstance(clips, dict) or not clips:
        raise ValueError(f"{path}: expected {{'clips': {{'<path under {data}>': 0 or 1, ...}}}}")
    for rel, v in clips.items():
        if v not in (0, 1):
            raise ValueError(f"{path}: clips.{rel}: label must be 0 or 1")
        if not (data / rel).is_file():
            raise ValueError(f"{path}: clips.{rel}: no such clip under {data}")
    if not any(clips.values()) or all(clips.values()):
        raise ValueError(f"{path}: MIL needs both anomalous (1) and normal (0) clips")
    return clips


def _tail(smoothed: list[np.ndarray], times: list[np.ndarray], detect: DetectConfig):
    return fit_tail(
        list(zip(smoothed, times, strict=True)),
        ema_alpha=detect.ema_alpha,
        min_duration_s=detect.min_duration_s,
        merge_gap_s=detect.merge_gap_s,
        cooldown_s=detect.cooldown_s,
    )


def _card(
    kind, edge, window, source: str, clips, t0, frame, cells, ema_alpha, note, tail=None, dwell=None, frame_size=None
) -> ModelCard:
    rows, cols = edge.grid_rows, edge.grid_cols
    features = {k: getattr(edge, k) for k in EdgeSettings.model_fields}
    return ModelCard(
        card_format=CARD_FORMAT,
        name=f"vad-{kind}",
        model_version=datetime.now(UTC).strftime(f"{kind}-%Y%m%d%H%M%S"),
        feature_schema_version=FEATURE_LAYOUT_VERSION,
        window=window,
        grid=(rows, cols),
        channels=N_CHANNELS,
        input_shape=["batch", window, rows, cols, N_CHANNELS],
        outputs=[tensors.CELL_SCORES, tensors.FRAME_SCORE],
        # Only the feature settings: camera sources (URLs, maybe with credentials) stay out of the card.
        edge=EdgeSettings.model_validate(features).model_dump(
            mode="json", exclude={"realtime", "decoder", "decode_threads", "blind_after_s", "blind_contrast"}
        ),
        training_data={
            "folder": source,
            "clips": len(clips),
            "frames": int(sum(len(g) for g in clips.values())),
            "seconds": round(time.monotonic() - t0, 1),
            # The decoded frames' (width, height): the pixels the scales are in.
            **({"frame_size": list(frame_size)} if frame_size else {}),
        },
        calibration=Calibration(
            frames=int(frame.size),
            ema_alpha=ema_alpha,
            frame_score_quantiles={q: float(np.quantile(frame, float(q))) for q in QUANTILES},
            cell_score_quantiles={q: float(np.quantile(cells, float(q))) for q in QUANTILES},
            tail=tail,
        ),
        dwell=dwell,
        notes=note,
    )


def train_mil(
    data: Path,
    out: Path,
    edge: EdgeConfig,
    clip_labels: Path,
    ema_alpha: float = 0.5,
    detect: DetectConfig | None = None,
    progress: Progress | None = None,
) -> ModelCard:
    """Weakly supervised model (models/scorers/mil.py) from clip-level labels. Thresholds are calibrated on
    the normal clips' scores (in-sample: MIL's weights need the anomalous clips too)."""
    detect = detect or DetectConfig(ema_alpha=ema_alpha)
    ema_alpha = detect.ema_alpha
    progress = progress or Progress()
    labels = read_clip_labels(data, clip_labels)
    t0 = time.monotonic()
    grids, times, size = extract_timed({rel: data / rel for rel in labels}, edge, progress)
    progress("fit")
    normal = {k: g for k, g in grids.items() if not labels[k]}
    scales = mil.fit_scales(list(normal.values()))
    w, b = mil.train([g for k, g in grids.items() if labels[k]], list(normal.values()), scales)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.onnx"
    onnx.save(mil.build_onnx(scales, w, b), model_path)
    scored = score_clips(model_path, normal, 1)
    smoothed = {k: _ema(f, ema_alpha) for k, (f, _) in scored.items()}
    frame = np.concatenate(list(smoothed.values()))
    cells = np.concatenate([c.ravel() for _, c in scored.values()])
    tail = _tail(list(smoothed.values()), [times[k] for k in smoothed], detect)
    card = _card(
        "mil",
        edge,
        1,
        data.name,
        grids,
        t0,
        frame,
        cells,
        ema_alpha,
        "MIL (Sultani et al. 2018) on clip labels; "
        f"weights {w.tolist()}, bias {b:.3f}; calibration in-sample on the normal clips.",
        tail,
        frame_size=size,
    )
    card.save(card_path(model_path))
    progress(f"done: {model_path}")
    return card


def train(
    data: Path,
    out: Path,
    edge: EdgeConfig,
    kind: str = "scalep",
    ema_alpha: float = 0.5,
    detect: DetectConfig | None = None,
    progress: Progress | None = None,
) -> ModelCard:
    """Fit on DIR/train, export ONNX + card. The card's thresholds are calibrated leave-one-clip-out:
    each training clip is scored by a model fitted on the other clips, so the quantiles and the tail
    model (models/tail.py) describe normal video the model has not seen (in-sample ones would set
    thresholds too low). ``detect``: the detector settings the tail's episodes are counted with."""
    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r}; choose from {sorted(MODELS)}")
    detect = detect or DetectConfig(ema_alpha=ema_alpha)
    progress = progress or Progress()
    t0 = time.monotonic()
    clips, times, size = extract_timed({p.stem: p for p in list_clips(data / "train")}, edge, progress)
    return fit_clips(clips, times, out, edge, kind, detect, progress, data.name, t0, frame_size=size)


def fit_clips(
    clips: dict[str, np.ndarray],
    times: dict[str, np.ndarray],
    out: Path,
    edge: EdgeConfig,
    kind: str,
    detect: DetectConfig,
    progress: Progress,
    source: str,
    t0: float,
    frame_size: tuple[int, int] | None = None,
) -> ModelCard:
    """Fits ``kind`` on feature grids of normal clips ({name: [n, R, C, F]}, event times in ms) and
    exports ONNX + card to ``out``; what ``train`` does after decoding, and ``vad train
    --from-kafka`` after reading a camera's records."""
    ema_alpha = detect.ema_alpha
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / "model.onnx"
    progress(f"fit {kind}")
    window = _fit_export(kind, list(clips.values()), model_path)
    frame_scores, cell_scores, held_out = [], [], []
    if len(clips) >= 2:
        tmp = out / ".loco.onnx"
        for i, name in enumerate(clips):
            _fit_export(kind, [g for k, g in clips.items() if k != name], tmp)
            # One ONNX session per held-out clip: their provider lines would bury the progress.
            with _quiet("models.onnx_session"):
                f, c = score_clips(tmp, {name: clips[name]}, window)[name]
            frame_scores.append(_ema(f, ema_alpha))
            cell_scores.append(c.ravel())
            held_out.append(name)
            progress("calibration: clips held out and scored", i + 1, len(clips))
        tmp.unlink()
        note = "Calibration quantiles and tail are leave-one-clip-out on the training clips (smoothed frame score)."
    else:
        name = next(iter(clips))
        f, c = score_clips(model_path, clips, window)[name]
        frame_scores, cell_scores, held_out = [_ema(f, ema_alpha)], [c.ravel()], [name]
        note = "One training clip: calibration quantiles and tail are in-sample and optimistic."
    progress("tail fit")
    tail = _tail(frame_scores, [times[k] for k in held_out], detect)
    frame = np.concatenate(frame_scores)
    cells = np.concatenate(cell_scores)
    dwell = dwell_norms(clips, times)
    card = _card(kind, edge, window, source, clips, t0, frame, cells, ema_alpha, note, tail, dwell, frame_size)
    card.save(card_path(model_path))
    progress(f"done: {model_path}")
    log.info("trained %s in %.1f s: %s", kind, time.monotonic() - t0, model_path)
    return card
