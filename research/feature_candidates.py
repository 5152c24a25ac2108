"""Candidate edge features for issue 26: appearance and object cues on top of the schema-v1 flow grid.

The extractor below runs the product's own flow extractor (vad.edge.features, unchanged: the first 12
channels are bit-for-bit the schema-v1 record) and, from the same half-size frame and flow, adds per cell:

- ``fgf``: foreground fraction from an OpenCV MOG2 background subtractor at the flow size (shadows
  off). The subtractor is warmed on normal frames of the camera (``warm``) before a stream starts, as a
  live edge would be after its first minutes; then it keeps learning causally on the stream.
- ``hog0..7``: unsigned gradient-orientation histogram (8 bins over 0-180 degrees, Sobel at the flow
  size) of the foreground pixels, magnitude-weighted, per cell mean: the shape of what is there.
- ``obj_*``: connected components of the (closed) foreground mask: bounding-box height and width and
  sqrt(area) in source pixels, fill ratio area/(h*w), and the mean flow speed inside the component in
  source pixels/frame; each cell gets the values of the largest component covering it (0 if none).
  Perspective is left to the scorer, which is fitted per cell (a normal height at that row).
- optional ``yolo_*`` (``detector``): YOLOX-nano person / non-person (bicycle, car, motorcycle, bus,
  truck, skateboard) box scores painted onto the cells the boxes cover (max per cell).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from vad.config import EdgeSettings
from vad.edge.features import FlowFeatureExtractor, tune_malloc

BASE = ("dx", "dy", "mag", *(f"dir{i}" for i in range(8)), "fg")
EXTRA = ("fgf", *(f"hog{i}" for i in range(8)), "obj_h", "obj_w", "obj_sqa", "obj_fill", "obj_speed")
YOLO = ("yolo_person", "yolo_other")
CHANNELS = BASE + EXTRA
YOLO_PATH = Path("/work/shared/models/yolox_nano_coco/yolox_nano.onnx")
OTHER_CLASSES = (1, 2, 3, 5, 7, 36)  # bicycle, car, motorcycle, bus, truck, skateboard


class YoloxNano:
    """YOLOX-nano (README of /work/shared/models/yolox_nano_coco): boxes of person and non-person."""

    def __init__(self, path: Path = YOLO_PATH, size: int = 416, conf: float = 0.25):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.size, self.conf = size, conf
        grids, strides = [], []
        for s in (8, 16, 32):
            n = size // s
            yy, xx = np.mgrid[:n, :n]
            grids.append(np.stack([xx.ravel(), yy.ravel()], 1))
            strides.append(np.full((n * n, 1), s))
        self.grid, self.stride = np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)

    def detect(self, gray: np.ndarray) -> list[tuple[float, float, float, float, float, float]]:
        """-> [(x0, y0, x1, y1, p_person, p_other)] in source pixels, after a simple NMS."""
        h, w = gray.shape
        r = min(self.size / h, self.size / w)
        img = np.full((self.size, self.size, 3), 114, np.uint8)
        small = cv2.resize(gray, (round(w * r), round(h * r)), interpolation=cv2.INTER_LINEAR)
        img[: small.shape[0], : small.shape[1]] = small[..., None]
        out = self.sess.run(None, {"images": img.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]
        obj = out[:, 4]
        p_person = obj * out[:, 5]
        p_other = obj * out[:, 5 + np.array(OTHER_CLASSES)].max(1)
        keep = np.maximum(p_person, p_other) >= self.conf
        if not keep.any():
            return []
        xy = (out[keep, :2] + self.grid[keep]) * self.stride[keep] / r
        wh = np.exp(out[keep, 2:4]) * self.stride[keep] / r
        boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
        sc = np.maximum(p_person[keep], p_other[keep])
        idx = cv2.dnn.NMSBoxes(
            [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes],
            sc.tolist(),
            self.conf,
            0.5,
        )
        idx = np.asarray(idx).ravel()
        return [(*boxes[i].tolist(), float(p_person[keep][i]), float(p_other[keep][i])) for i in idx]


class CandidateExtractor:
    """Schema-v1 flow grid + candidate channels: process(gray) -> float32 [rows, cols, len(channels)]."""

    def __init__(
        self, cfg: EdgeSettings, detector: YoloxNano | None = None, var_threshold: float = 16.0, history: int = 300
    ):
        tune_malloc()
        self.base = FlowFeatureExtractor(cfg)
        self.rows, self.cols = cfg.grid_rows, cfg.grid_cols
        self.var_threshold, self.history = var_threshold, history
        self.detector = detector
        self.channels = CHANNELS + (YOLO if detector else ())
        self.timings = {"base": 0.0, "bgs": 0.0, "hog": 0.0, "obj": 0.0, "yolo": 0.0}
        self._mog: cv2.BackgroundSubtractorMOG2 | None = None
        self._kernel = np.ones((3, 3), np.uint8)
        self._warm: list[np.ndarray] = []

    def _new_mog(self):
        mog = cv2.createBackgroundSubtractorMOG2(
            history=self.history, varThreshold=self.var_threshold, detectShadows=False
        )
        return mog

    def warm(self, frames: list[np.ndarray]) -> None:
        """Normal frames (full size gray) the background model learns before each stream (reset)."""
        self._warm = frames
        self.reset()

    def reset(self) -> None:
        self.base.reset()
        self._mog = self._new_mog()
        for f in self._warm:
            g = self.base._setup(*f.shape)
            self._mog.apply(cv2.resize(f, (g.fw, g.fh), interpolation=cv2.INTER_AREA))
        self.base.reset()

    def process(self, gray: np.ndarray) -> np.ndarray:
        if self._mog is None:
            self.reset()
        b = self.base
        t0 = time.thread_time()
        g = b._setup(*gray.shape)
        small = b._normalise(cv2.resize(gray, (g.fw, g.fh), interpolation=cv2.INTER_AREA))
        prev, b._prev = b._prev, small
        n_out = len(self.channels)
        out = np.zeros((self.rows, self.cols, n_out), np.float32)
        flow = None
        if prev is not None:
            flow = b._dis.calc(prev, small, None)
            out[..., :12] = b.reduce(flow, small, prev, g)
        t1 = time.thread_time()
        fgmask = self._mog.apply(small)  # 0 / 255
        fg = (fgmask > 127).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self._kernel)
        cr, cc = g.fh // self.rows, g.fw // self.cols
        exact = g.fh == cr * self.rows and g.fw == cc * self.cols

        def cell_mean(a):
            return cv2.resize(a.astype(np.float32), (self.cols, self.rows), interpolation=cv2.INTER_AREA)

        def cell_max(a):
            if exact:
                return a.reshape(self.rows, cr, self.cols, cc).max(axis=(1, 3))
            return cv2.resize(a, (self.cols, self.rows), interpolation=cv2.INTER_NEAREST)

        out[..., 12] = cell_mean(fg)
        t2 = time.thread_time()
        gx = cv2.Sobel(small, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(small, cv2.CV_32F, 0, 1, ksize=3)
        mag, ang = cv2.cartToPolar(gx, gy)
        sel = fg.ravel().nonzero()[0]
        if sel.size:
            a = ang.ravel().take(sel)
            a = np.where(a >= np.pi, a - np.float32(np.pi), a)  # unsigned orientation
            idx = (a * np.float32(8 / np.pi)).astype(np.intp)
            np.minimum(idx, 7, out=idx)
            idx += g.bin_base.take(sel)
            hist = np.bincount(idx, weights=mag.ravel().take(sel), minlength=self.rows * self.cols * 8)
            out[..., 13:21] = (hist * (g.mean_scale / 255.0)).reshape(self.rows, self.cols, 8)
        t3 = time.thread_time()
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        if n > 1:
            area = stats[:, cv2.CC_STAT_AREA].astype(np.float32)
            h = stats[:, cv2.CC_STAT_HEIGHT].astype(np.float32)
            w = stats[:, cv2.CC_STAT_WIDTH].astype(np.float32)
            ok = area >= 4
            ok[0] = False
            if flow is not None:
                fm = cv2.magnitude(flow[..., 0] * g.sx, flow[..., 1] * g.sy)
                speed = np.bincount(labels.ravel(), weights=fm.ravel(), minlength=n) / np.maximum(area, 1)
            else:
                speed = np.zeros(n)
            table = np.zeros((n, 5), np.float32)
            table[ok] = np.stack(
                [h * g.sy, w * g.sx, np.sqrt(area * g.sx * g.sy), area / np.maximum(h * w, 1), speed], 1
            )[ok].astype(np.float32)
            # A cell takes the largest component's values: order components by area, label map of rank.
            rank = np.zeros(n, np.int32)
            order = np.argsort(area * ok)
            rank[order] = np.arange(n)
            rank[~ok] = 0
            top = cell_max(rank[labels])
            inv = np.empty(n, np.intp)
            inv[rank] = np.arange(n)
            inv[0] = 0
            comp = np.where(top > 0, inv[top], 0)
            out[..., 21:26] = table[comp]
        t4 = time.thread_time()
        if self.detector is not None:
            sy, sx = gray.shape[0] / self.rows, gray.shape[1] / self.cols
            for x0, y0, x1, y1, pp, po in self.detector.detect(gray):
                r0, r1 = max(int(y0 // sy), 0), min(int(np.ceil(y1 / sy)), self.rows)
                c0, c1 = max(int(x0 // sx), 0), min(int(np.ceil(x1 / sx)), self.cols)
                blk = out[r0:r1, c0:c1, 26:28]
                np.maximum(blk, np.array([pp, po], np.float32), out=blk)
        t5 = time.thread_time()
        for k, dt in zip(self.timings, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=False):
            self.timings[k] += dt
        return out


def extract_sequence(ex: CandidateExtractor, frames: list[np.ndarray]) -> np.ndarray:
    """One stream (a clip or a synthetic sequence): reset, then every frame in order."""
    ex.reset()
    return np.stack([ex.process(f) for f in frames])


def check_base_identity(frames: list[np.ndarray], cfg: EdgeSettings) -> float:
    """Max |difference| between our first 12 channels and the product extractor's grids."""
    from vad.edge.features import make_extractor

    ref = make_extractor(cfg)
    a = np.stack([ref.process(f) for f in frames])
    b = extract_sequence(CandidateExtractor(cfg), frames)[..., :12]
    return float(np.abs(a - b).max())
