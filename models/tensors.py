"""ONNX tensor names and shapes: defined once, used by the exporter and the scoring UDF.

Contract of every scoring model:
- input ``INPUT`` float32 [batch, T, rows, cols, channels]: the last T feature grids of one camera,
  oldest first (schema v1 channel layout);
- output ``CELL_SCORES`` float32 [batch, rows, cols]: per-cell anomaly score, calibrated so that
  normal cells sit near or below 1;
- output ``FRAME_SCORE`` float32 [batch]: the max of the cell scores (the detector relies on this to
  recompute it without masked cells).
"""

INPUT = "windows"
CELL_SCORES = "cell_scores"
FRAME_SCORE = "frame_score"
OPSET = 17
