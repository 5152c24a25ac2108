"""The edge's feature settings as one 32-bit number, carried in every record (schema v4).

A model learns what its camera's features look like under one set of edge settings: the flow
method and its knobs, the flow's size, the gate, the lighting normalisation, the grid and the frame
sampling. Features computed under other settings look plausible and score wrongly, without any
error: half-size flow against a model of full-size flow sees every speed change its scale, a
sampling rate of 25 fps against one of 10 sees speeds shrink by 2.5. The card records the settings
the model was trained with; the record says which ones its edge used, so the job can compare the
two (``edge_settings_mismatch``) and ``vad train --from-kafka`` can tell which records it may learn from.

The digest is a CRC-32 of the settings in a canonical form. It leaves out what does not change the
features (capture, reconnects, the decoder) and knobs that the chosen method does not use (CLAHE's
clip limit without CLAHE, DIS's knobs with Farneback), so that two configurations that compute the
same features have the same digest. 0 means "not stated" (records of schema versions 1-3).
"""

from __future__ import annotations

import json
import zlib

from vad.config import EdgeSettings

# Raised when the extractor's arithmetic changes for the same settings, so that an edge and a job of
# releases that compute different features from the same settings do not match. (Cards do not record
# it: a card is compared under the job's release.)
FEATURE_CODE_VERSION = 1
_DIS_KNOBS = ("dis_preset", "dis_finest_scale", "dis_iterations", "dis_refine_iterations", "dis_patch_stride")
FEATURE_FIELDS = (
    "grid_rows",
    "grid_cols",
    "flow",
    *_DIS_KNOBS,
    "flow_scale",
    "flow_min_height",
    "normalise",
    "clahe_clip",
    "flow_gate",
    "compensate_camera_motion",
    "resize",
    "sample_every",
    "target_fps",
)


def feature_settings(cfg: EdgeSettings) -> dict:
    """The settings the features depend on, with the ones the chosen methods ignore left out."""
    out = {k: getattr(cfg, k) for k in FEATURE_FIELDS}
    if cfg.flow != "dis":
        for k in _DIS_KNOBS:
            del out[k]
    if cfg.normalise != "clahe":
        del out["clahe_clip"]
    # Compensation leaves a still camera's features exactly as they were (it never engaged on the
    # development clips), so when on it keeps the digest of releases before it; off is stated.
    if cfg.compensate_camera_motion:
        del out["compensate_camera_motion"]
    if out["resize"] is not None:
        out["resize"] = list(out["resize"])
    # Floats as floats: a YAML 4 and 4.0 are the same gate.
    for k in ("flow_scale", "clahe_clip", "flow_gate", "target_fps"):
        if out.get(k) is not None:
            out[k] = float(out[k])
    return {"code": FEATURE_CODE_VERSION, **out}


def settings_digest(cfg: EdgeSettings) -> int:
    """The record's ``edge_digest`` for features computed with these settings: never 0."""
    text = json.dumps(feature_settings(cfg), sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode("ascii")) or 1


def describe(cfg: EdgeSettings) -> str:
    """The feature settings in a line, for messages that ask an operator to match them."""
    return ", ".join(f"{k}={v}" for k, v in feature_settings(cfg).items() if k != "code")
