"""ONNX Runtime session for the scoring models: CUDA when it really works, else the CPU.

onnxruntime-gpu lists the CUDA provider even on machines without a GPU and then falls back to the
CPU with a warning, so the provider actually in use is read back from the session and logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from models import tensors

log = logging.getLogger(__name__)


def open_session(model_path: Path, threads: int = 1):
    import onnxruntime as ort

    if not Path(model_path).is_file():
        raise FileNotFoundError(f"model not found: {model_path}")
    # Without a GPU the CUDA provider fails to load with an error-level message; we report the
    # fallback ourselves, once, below.
    ort.set_default_logger_severity(4)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    wanted = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    sess = ort.InferenceSession(str(model_path), sess_options=opts, providers=wanted)
    used = sess.get_providers()
    if "CUDAExecutionProvider" in wanted and "CUDAExecutionProvider" not in used:
        log.info("CUDA provider unavailable here (no GPU or CUDA libraries); scoring on CPU")
    log.info("ONNX model %s on providers %s", Path(model_path).name, used)
    return sess


class OnnxScorer:
    """Scores batches of windows [B, T, R, C, F] -> (frame scores [B], cell scores [B, R, C])."""

    def __init__(self, model_path: Path, threads: int = 1):
        self.session = open_session(model_path, threads)
        self.providers = self.session.get_providers()

    def score(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cells, frame = self.session.run(
            [tensors.CELL_SCORES, tensors.FRAME_SCORE], {tensors.INPUT: np.ascontiguousarray(windows, np.float32)}
        )
        return frame, cells
