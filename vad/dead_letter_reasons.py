"""The reasons the job gives a record it cannot score (``vad.records.DeadLetter.reason``): one list
for the published schema, the job's per-reason counters, the alerts and ``vad dead-letters``."""

from __future__ import annotations

# Every ``DeadLetter.reason`` the job writes, with what it means where the name does not say it.
# The job counts dead letters per reason (a ``reason`` label in Prometheus); a consumer should still
# take an unknown reason as "not scored", since later releases may add some.
DEAD_LETTER_REASONS: dict[str, str] = {
    "bad_type": "",
    "oversize": "",
    "truncated": "",
    "bad_magic": "",
    "unsupported_version": "an edge newer than the job",
    "bad_flags": "",
    "bad_shape": "",
    "bad_length": "",
    "bad_camera_id": "",
    "non_finite": "",
    "bad_frame_index": "",
    "bad_timestamp": "",
    "bad_frame_size": "",
    "bad_edge_digest": "",
    "bad_json": "",
    "grid_mismatch": "valid, but not the grid the model scores",
    "layout_mismatch": "valid, but not the feature layout the model was trained on: the model card's "
    "feature_schema_version or channels",
    "frame_size_mismatch": "valid, but frames of another size than the model was trained on: its card's "
    "training_data.frame_size",
    "edge_settings_mismatch": "valid, but computed with other edge settings than the model was trained "
    "with: the record's edge digest against its card's edge settings",
}
# Records that are valid but were computed otherwise than their camera's model expects: until its
# edge or its model is changed, none of that camera's records is scored.
MISMATCH_REASONS = frozenset(r for r in DEAD_LETTER_REASONS if r.endswith("_mismatch"))
