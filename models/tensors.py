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


def scoring_model(name: str, window: int, rows: int, cols: int, nodes: list, initializers: list):
    """Wrap a scorer's nodes in the contract above: the named input and outputs, dynamic batch axis,
    this opset; checked before it is returned."""
    from onnx import TensorProto, checker, helper

    from vad.schema import N_CHANNELS

    x = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["batch", window, rows, cols, N_CHANNELS])
    cells = helper.make_tensor_value_info(CELL_SCORES, TensorProto.FLOAT, ["batch", rows, cols])
    frame = helper.make_tensor_value_info(FRAME_SCORE, TensorProto.FLOAT, ["batch"])
    graph = helper.make_graph(nodes, name, [x], [cells, frame], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what onnxruntime 1.31 and onnx 1.22 both read
    checker.check_model(model)
    return model
