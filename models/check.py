"""Is a model one the job can score with? Checked before a job is started with it: a job whose
Python workers cannot open their model fails in every worker and restarts from its checkpoint for as
long as it is deployed, without saying why anywhere but in a worker's log.

``check_model`` opens what the job's workers open (the ONNX file and the card beside it), checks the
card against the records this code reads (feature layout, channels) and against the model itself
(one window of the card's shape scored), and raises ``ModelError`` with one line saying what is
wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from models import tensors
from models.card import ModelCard, card_path
from vad.config import EdgeConfig
from vad.schema import FEATURE_LAYOUT_VERSION, N_CHANNELS


class ModelError(ValueError):
    """A model the job cannot score with; the message is one line."""


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _validation_errors(e: ValidationError, prefix: str = "") -> str:
    return "; ".join(f"{prefix}{'.'.join(map(str, err['loc'])) or '(root)'}: {err['msg']}" for err in e.errors())


def load_card(model_path: Path) -> ModelCard:
    """The model's card, parsed and consistent with the records this code reads."""
    path = card_path(model_path)
    if not path.is_file():
        raise ModelError(f"no model card {path.name} beside {model_path}")
    try:
        card = ModelCard.load(path)
    except ValidationError as e:
        raise ModelError(f"{path}: {_validation_errors(e)}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"{path}: not readable: {_one_line(e)}") from None
    if card.feature_schema_version != FEATURE_LAYOUT_VERSION:
        raise ModelError(
            f"{path}: feature_schema_version is {card.feature_schema_version}, but the records carry "
            f"feature layout {FEATURE_LAYOUT_VERSION}"
        )
    if card.channels != N_CHANNELS:
        raise ModelError(f"{path}: channels is {card.channels}, but the records carry {N_CHANNELS} per cell")
    size = card.training_data.get("frame_size")
    if size is not None and not (
        isinstance(size, list) and len(size) == 2 and all(type(v) is int and 0 < v < 65536 for v in size)
    ):
        raise ModelError(f"{path}: training_data.frame_size is {size!r}, not [width, height] in pixels")
    try:
        edge = card.edge_config(EdgeConfig())
    except ValidationError as e:
        raise ModelError(f"{path}: {_validation_errors(e, 'edge.')}") from None
    if (edge.grid_rows, edge.grid_cols) != tuple(card.grid):
        raise ModelError(
            f"{path}: grid is {card.grid[0]}x{card.grid[1]}, but its edge settings make "
            f"{edge.grid_rows}x{edge.grid_cols} grids"
        )
    want = ["batch", card.window, *card.grid, card.channels]
    shape = card.input_shape
    if len(shape) != len(want) or any(isinstance(s, int) and s != w for s, w in zip(shape[1:], want[1:], strict=True)):
        raise ModelError(f"{path}: input_shape is {shape}, but window, grid and channels make {want}")
    return card


def _session(model_path: Path):
    # On the CPU and silently: open_session logs the provider it picked, which the workers report.
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def check_model(model_path: Path) -> ModelCard:
    """The card of the model at ``model_path`` once the model and its card are known to work
    together: raises ``ModelError`` otherwise."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"{model_path}: no such file")
    card = load_card(model_path)
    try:
        session = _session(model_path)
    except Exception as e:  # onnxruntime raises its own types for every kind of bad file
        raise ModelError(f"{model_path}: not a loadable ONNX model: {_one_line(e)}") from None
    inputs = [i.name for i in session.get_inputs()]
    outputs = {o.name for o in session.get_outputs()}
    missing = {tensors.CELL_SCORES, tensors.FRAME_SCORE} - outputs
    if inputs != [tensors.INPUT] or missing:
        raise ModelError(
            f"{model_path}: inputs {inputs} and outputs {sorted(outputs)}; a scoring model takes "
            f"[{tensors.INPUT!r}] and gives {tensors.CELL_SCORES!r} and {tensors.FRAME_SCORE!r}"
        )
    rows, cols = card.grid
    window = np.zeros((2, card.window, rows, cols, card.channels), np.float32)
    try:
        cells, frame = session.run([tensors.CELL_SCORES, tensors.FRAME_SCORE], {tensors.INPUT: window})
    except Exception as e:
        shape = list(window.shape)
        raise ModelError(f"{model_path}: does not score a window of its card's shape {shape}: {_one_line(e)}") from None
    if np.shape(frame) != (2,) or np.shape(cells) != (2, rows, cols):
        raise ModelError(
            f"{model_path}: scores of shapes {list(np.shape(frame))} and {list(np.shape(cells))} for a batch of 2, "
            f"its card says [2] and [2, {rows}, {cols}]"
        )
    return card
