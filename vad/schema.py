"""The frame-feature record: the one wire schema shared by producer, job, consumers and tests.

A record carries one sampled frame's motion features reduced to a grid of cells. It is binary (a
fixed little-endian header, the camera id, then float32 cells, dense or sparse) because a JSON float
list would be ~4x larger and slower to parse in the job's hot path. ``to_json``/``from_json`` exist
for debugging.

Wire layout, schema version 4 (all little-endian; version 3 is the same without the edge digest,
version 2 also without the HALF flag, version 1 also without SPARSE)::

    offset size field
    0      4    magic  b"VADF"
    4      1    schema version (4; 1 to 3 are still read)
    5      1    flags (bit 0: GAP, the first record of a producer stream, or frames were lost
                before this one;
                bit 1: SPARSE, the features are stored sparse, versions 2 to 4;
                bit 2: HALF, the feature values are float16, versions 3 and 4)
    6      2    camera id length in bytes (n)
    8      8    frame index (uint64, per camera and producer stream: from 0, increasing)
    16     8    event timestamp, ms since the Unix epoch (int64)
    24     2    frame width  (pixels, before any edge resize)
    26     2    frame height
    28     2    grid rows
    30     2    grid cols
    32     2    channels per cell (must equal len(CHANNELS) for this version)
    34     n    camera id, UTF-8
    34+n   4    edge digest (uint32): the edge's feature settings (vad.edge.digest), 0 if not stated
    38+n   features, C order [rows, cols, channels], each value float32 (4 bytes) or, with HALF,
           float16 (2 bytes), either
           dense:  rows*cols*channels values
           SPARSE: a bit mask of ceil(rows*cols*channels/8) bytes (bit i, least significant bit
                   first, set when value i is not zero), then the non-zero values

SPARSE because motion features are mostly exact zeros (83 % of Ped2's values: ~2.1 KB a record
instead of ~10.4 KB), and every byte is copied several times on its way through the job; the encoder
picks whichever form is smaller. HALF because the values are most of the rest (~1.25 KB as float16);
float16 moved the model's frame scores by at most 0.04 % on Ped2, and a value beyond its range
(65504) makes the record travel as float32 (``edge.wire_precision``; ``encode`` is exact unless
asked). Figures: docs/decisions/float16-sparse-wire-format.md. Readers accept versions 1 to 4.

Channel layout (per cell, the same in all versions: ``FEATURE_LAYOUT_VERSION``) is ``CHANNELS``
below: mean flow dx and dy (pixels at the original resolution per sampled frame, that is per
1/target_fps s), mean flow magnitude, a magnitude-weighted histogram of flow direction in 8 bins of
45 degrees centred on +x, then turning towards +y (image coordinates, y down: bin 2 is motion down
the image), and a foreground cue (mean absolute frame difference, 0-1 scale).
"""

from __future__ import annotations

import functools
import json
import re
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

SCHEMA_VERSION = 4  # what the encoder writes
READABLE_VERSIONS = (1, 2, 3, 4)
FEATURE_LAYOUT_VERSION = 1  # the channels below; a model card names the layout it was trained on
MAGIC = b"VADF"
FLAG_GAP = 0x01
FLAG_SPARSE = 0x02  # wire encoding only: never set on a decoded FrameFeatures
FLAG_HALF = 0x04  # wire encoding only, like SPARSE
_KNOWN_FLAGS = {
    1: FLAG_GAP,
    2: FLAG_GAP | FLAG_SPARSE,
    3: FLAG_GAP | FLAG_SPARSE | FLAG_HALF,
    4: FLAG_GAP | FLAG_SPARSE | FLAG_HALF,
}
DIGEST_SINCE = 4  # the first version with the edge digest
_DIGEST = struct.Struct("<I")
WIRE_PRECISIONS = ("float32", "float16")
_F16_MAX = float(np.finfo(np.float16).max)

DIRECTION_BINS = 8
CHANNELS: tuple[str, ...] = (
    "dx",
    "dy",
    "mag",
    *(f"dir{i}" for i in range(DIRECTION_BINS)),
    "fg",
)
N_CHANNELS = len(CHANNELS)

_HEADER = struct.Struct("<4sBBHQqHHHHH")
HEADER_SIZE = _HEADER.size

MAX_CAMERA_ID_BYTES = 128
MAX_GRID_SIDE = 256
MAX_RECORD_BYTES = 1 << 20
# Far enough apart to reject garbage timestamps (year 2000 .. 2200) yet accept every real clock.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 7_258_118_400_000
# The legal camera ids, the one definition every part uses (edge, config, job, Redis keys): ASCII
# letters, digits and _.:- in segments joined by "/", the first character a letter or digit, no empty
# segment (no leading, trailing or doubled "/"), no "." or ".." segment. Ids become Kafka keys, Redis
# key parts and, downstream, file and URL paths, where "a/../x" is "x" and a control character can
# forge a log line. Matched whole (``fullmatch``): "$" would also match before a final newline.
_CAMERA_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*(?:/(?!\.\.?(?:/|\Z))[A-Za-z0-9_.:\-]+)*", re.ASCII)


class SchemaError(ValueError):
    """A record that does not satisfy the schema. ``reason`` is a short stable code for metrics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FrameFeatures:
    camera_id: str
    frame_index: int
    ts_ms: int
    frame_width: int
    frame_height: int
    features: np.ndarray  # float32 [rows, cols, N_CHANNELS]
    flags: int = 0
    schema_version: int = field(default=SCHEMA_VERSION)
    edge_digest: int = 0  # the edge's feature settings (vad.edge.digest); 0: not stated

    @property
    def grid_shape(self) -> tuple[int, int]:
        return int(self.features.shape[0]), int(self.features.shape[1])

    @property
    def gap(self) -> bool:
        return bool(self.flags & FLAG_GAP)

    def validate(self) -> FrameFeatures:
        self.validate_meta()
        f = self.features
        if not isinstance(f, np.ndarray) or f.dtype != np.float32 or f.ndim != 3:
            raise SchemaError("bad_shape", "features must be a float32 array [rows, cols, C]")
        rows, cols, ch = f.shape
        if not (0 < rows <= MAX_GRID_SIDE and 0 < cols <= MAX_GRID_SIDE):
            raise SchemaError("bad_shape", f"grid {rows}x{cols} outside 1..{MAX_GRID_SIDE}")
        if ch != N_CHANNELS:
            raise SchemaError("bad_shape", f"{ch} channels, the feature layout has {N_CHANNELS}")
        if not np.isfinite(f).all():
            raise SchemaError("non_finite", "features contain NaN or infinity")
        return self

    def validate_meta(self) -> None:
        """Everything but the feature values (the batch decoder checks those for a whole batch)."""
        if type(self.camera_id) is not str or not camera_id_ok(self.camera_id):
            validate_camera_id(self.camera_id)  # raises with the reason
        if self.schema_version not in READABLE_VERSIONS:
            raise SchemaError("unsupported_version", f"schema version {self.schema_version}")
        if self.flags & ~FLAG_GAP:
            raise SchemaError("bad_flags", f"unknown flag bits {self.flags:#x}")
        if not 0 <= self.frame_index < 2**63:
            raise SchemaError("bad_frame_index", f"frame index {self.frame_index} out of range")
        if not MIN_TS_MS <= self.ts_ms <= MAX_TS_MS:
            raise SchemaError("bad_timestamp", f"ts_ms {self.ts_ms} outside 2000..2200")
        if not (0 < self.frame_width < 65536 and 0 < self.frame_height < 65536):
            raise SchemaError("bad_frame_size", f"{self.frame_width}x{self.frame_height}")
        if type(self.edge_digest) is not int or not 0 <= self.edge_digest < 2**32:
            raise SchemaError("bad_edge_digest", f"edge digest {self.edge_digest!r} is not a uint32")
        if self.edge_digest and self.schema_version < DIGEST_SINCE:
            raise SchemaError("bad_edge_digest", f"schema version {self.schema_version} has no edge digest")

    def encode(self, precision: str = "float32") -> bytes:
        """The wire record. ``precision="float16"`` halves the values' bytes (schema version 3 on;
        a record with a value beyond float16's range is sent as float32)."""
        self.validate()
        if precision not in WIRE_PRECISIONS:
            raise ValueError(f"precision must be one of {WIRE_PRECISIONS}, not {precision!r}")
        cam = self.camera_id.encode("utf-8")
        rows, cols, ch = self.features.shape
        flat = np.ascontiguousarray(self.features, dtype="<f4").reshape(-1)
        half = precision == "float16" and self.schema_version >= 3 and _fits_half(flat)
        if half:
            flat = flat.astype("<f2")
        nonzero = flat != 0  # after rounding: a value below float16's smallest becomes a zero
        nnz = int(np.count_nonzero(nonzero))
        mask_bytes = (flat.size + 7) // 8
        sparse = self.schema_version >= 2 and mask_bytes + flat.itemsize * nnz < flat.nbytes
        if sparse:
            payload = np.packbits(nonzero, bitorder="little").tobytes() + flat[nonzero].tobytes()
        else:
            payload = flat.tobytes()
        head = _HEADER.pack(
            MAGIC,
            self.schema_version,
            self.flags | (FLAG_SPARSE if sparse else 0) | (FLAG_HALF if half else 0),
            len(cam),
            self.frame_index,
            self.ts_ms,
            self.frame_width,
            self.frame_height,
            rows,
            cols,
            ch,
        )
        digest = _DIGEST.pack(self.edge_digest) if self.schema_version >= DIGEST_SINCE else b""
        return head + cam + digest + payload

    def to_json(self) -> str:
        """Debug form: readable, lossless for float32, ~4x larger than the wire form."""
        return json.dumps(
            {
                "schema_version": self.schema_version,
                "camera_id": self.camera_id,
                "frame_index": self.frame_index,
                "ts_ms": self.ts_ms,
                "frame_size": [self.frame_width, self.frame_height],
                "grid_shape": list(self.grid_shape),
                "channels": list(CHANNELS),
                "flags": self.flags,
                "edge_digest": self.edge_digest,
                "features": self.features.tolist(),
            }
        )

    @staticmethod
    def from_json(text: str) -> FrameFeatures:
        try:
            d = json.loads(text)
            # A value beyond float32 becomes infinity, refused by validate() as non_finite: no warning.
            with np.errstate(over="ignore"):
                features = np.asarray(d["features"], dtype=np.float32)
            rec = FrameFeatures(
                camera_id=d["camera_id"],
                frame_index=int(d["frame_index"]),
                ts_ms=int(d["ts_ms"]),
                frame_width=int(d["frame_size"][0]),
                frame_height=int(d["frame_size"][1]),
                features=features,
                flags=int(d.get("flags", 0)),
                schema_version=int(d["schema_version"]),
                edge_digest=int(d.get("edge_digest", 0)),
            )
        # OverflowError: int() of a JSON Infinity, a feature beyond float; RecursionError: nesting
        # deeper than the interpreter's stack. Both are malformed input, like the rest.
        except (KeyError, TypeError, ValueError, IndexError, OverflowError, RecursionError) as e:
            raise SchemaError("bad_json", str(e)) from e
        return rec.validate()


def _fits_half(values: np.ndarray) -> bool:
    return float(np.abs(values).max()) <= _F16_MAX


def wire_values(features: np.ndarray, precision: str) -> np.ndarray:
    """The float32 values a reader decodes from one record of these features sent at ``precision``
    (what offline code compares with streamed records)."""
    f = np.asarray(features, np.float32)
    return f.astype(np.float16).astype(np.float32) if precision == "float16" and _fits_half(f) else f


@functools.lru_cache(maxsize=65536)
def camera_id_ok(camera_id: str) -> bool:
    """Whether a string is a legal camera id (``validate_camera_id`` says why not)."""
    # A deployment has a bounded set of cameras: each id is checked once, not on every frame.
    try:
        validate_camera_id(camera_id)
    except SchemaError:
        return False
    return True


def validate_camera_id(camera_id: object) -> str:
    """``camera_id`` if it is a legal camera id (see ``_CAMERA_ID_RE``), else SchemaError bad_camera_id."""
    if not isinstance(camera_id, str) or not camera_id:
        raise SchemaError("bad_camera_id", "camera id must be a non-empty string")
    # surrogatepass: a lone surrogate (JSON "\ud800") has no UTF-8 form, so it is measured as the
    # bytes it would take and refused by the pattern below, not by an encoding error.
    if len(camera_id.encode("utf-8", "surrogatepass")) > MAX_CAMERA_ID_BYTES:
        raise SchemaError("bad_camera_id", f"camera id longer than {MAX_CAMERA_ID_BYTES} bytes")
    if not _CAMERA_ID_RE.fullmatch(camera_id):
        raise SchemaError(
            "bad_camera_id",
            f"camera id {camera_id!r} is not segments of [A-Za-z0-9_.:-] joined by '/' (starting with a "
            "letter or digit, no empty, '.' or '..' segment)",
        )
    return camera_id


class Head(NamedTuple):
    """A record's header, checked up to the feature bytes (``parse_head``)."""

    version: int
    flags: int  # as on the wire, SPARSE included
    camera_id: str
    frame_index: int
    ts_ms: int
    frame_width: int
    frame_height: int
    rows: int
    cols: int
    start: int  # offset of the feature bytes
    size: int  # values in the grid: rows * cols * channels
    dtype: str  # of the values on the wire: "<f4", or "<f2" with HALF
    edge_digest: int  # 0 before version 4


def parse_head(data: bytes) -> Head:
    """The header and camera id of one wire record; SchemaError with a reason code if malformed.
    A dense record's length is checked here; a sparse one's needs its mask (``_sparse_values``)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SchemaError("bad_type", f"expected bytes, got {type(data).__name__}")
    n = len(data)
    if n > MAX_RECORD_BYTES:
        raise SchemaError("oversize", f"{n} bytes > {MAX_RECORD_BYTES}")
    if n < HEADER_SIZE:
        raise SchemaError("truncated", f"{n} bytes, header needs {HEADER_SIZE}")
    magic, ver, flags, cam_len, idx, ts, w, h, rows, cols, ch = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise SchemaError("bad_magic", f"magic {magic!r} is not {MAGIC!r}")
    if ver not in READABLE_VERSIONS:
        raise SchemaError("unsupported_version", f"schema version {ver}, this reader knows {READABLE_VERSIONS}")
    if flags & ~_KNOWN_FLAGS[ver]:
        raise SchemaError("bad_flags", f"unknown flag bits {flags & ~_KNOWN_FLAGS[ver]:#x} in version {ver}")
    if ch != N_CHANNELS or not (0 < rows <= MAX_GRID_SIDE and 0 < cols <= MAX_GRID_SIDE):
        raise SchemaError("bad_shape", f"grid {rows}x{cols}x{ch}")
    start = HEADER_SIZE + cam_len
    if n < start:
        raise SchemaError("bad_length", f"{n} bytes, the camera id alone needs {start}")
    try:
        cam = bytes(data[HEADER_SIZE:start]).decode("utf-8")
    except UnicodeDecodeError as e:
        raise SchemaError("bad_camera_id", "camera id is not UTF-8") from e
    digest = 0
    if ver >= DIGEST_SINCE:
        if n < start + _DIGEST.size:
            raise SchemaError("bad_length", f"{n} bytes, the edge digest ends at {start + _DIGEST.size}")
        digest = _DIGEST.unpack_from(data, start)[0]
        start += _DIGEST.size
    size = rows * cols * ch
    dtype, item = ("<f2", 2) if flags & FLAG_HALF else ("<f4", 4)
    if flags & FLAG_SPARSE:
        if n < start + (size + 7) // 8:
            raise SchemaError("bad_length", f"{n} bytes, the sparse mask alone needs {start + (size + 7) // 8}")
    elif n != start + item * size:
        raise SchemaError("bad_length", f"{n} bytes, header says {start + item * size}")
    return Head(ver, flags, cam, idx, ts, w, h, rows, cols, start, size, dtype, digest)


_FLAGS_OFFSET = 5


def with_gap(data: bytes) -> bytes:
    """An encoded record with its GAP flag set (the rest unchanged): how the edge flags a record
    it already encoded when the one before it failed delivery."""
    if data[_FLAGS_OFFSET] & FLAG_GAP:
        return data
    out = bytearray(data)
    out[_FLAGS_OFFSET] |= FLAG_GAP
    return bytes(out)


def record_of(head: Head, features: np.ndarray) -> FrameFeatures:
    """The decoded record (not yet validated) of a parsed header and its [rows, cols, C] values."""
    return FrameFeatures(
        head.camera_id,
        head.frame_index,
        head.ts_ms,
        head.frame_width,
        head.frame_height,
        features,
        head.flags & FLAG_GAP,
        head.version,
        head.edge_digest,
    )


def decode(data: bytes) -> FrameFeatures:
    """Parse and validate one wire record; raise SchemaError with a reason code otherwise.
    (A whole batch at once: ``vad.batch_decode.decode_batch``, same results.)"""
    hd = parse_head(data)
    if hd.flags & FLAG_SPARSE:
        flat = _sparse_values(data, hd.start, hd.size, len(data), hd.dtype)
    else:
        flat = np.frombuffer(data, dtype=hd.dtype, offset=hd.start).astype(np.float32, copy=False)
    return record_of(hd, flat.reshape(hd.rows, hd.cols, N_CHANNELS)).validate()


def sparse_length_error(n: int, want: int) -> SchemaError:
    return SchemaError("bad_length", f"{n} bytes, the sparse mask says {want}")


def _sparse_values(data, start: int, size: int, n: int, dtype: str) -> np.ndarray:
    mask_bytes = (size + 7) // 8
    mask = np.frombuffer(data, np.uint8, mask_bytes, start)
    nonzero = np.unpackbits(mask, count=size, bitorder="little").view(bool)
    nnz = int(np.count_nonzero(nonzero))
    want = start + mask_bytes + np.dtype(dtype).itemsize * nnz
    if n != want or (size % 8 and mask[-1] >> (size % 8)):  # padding bits must be clear
        raise sparse_length_error(n, want)
    values = np.frombuffer(data, dtype, nnz, start + mask_bytes)
    out = np.zeros(size, np.float32)
    out[nonzero] = values
    return out


def peek_camera_id(data: bytes) -> str | None:
    """Best-effort camera id of a possibly malformed record, for dead-letter keys."""
    try:
        cam_len = struct.unpack_from("<H", data, 6)[0]
        return bytes(data[HEADER_SIZE : HEADER_SIZE + min(cam_len, MAX_CAMERA_ID_BYTES)]).decode("utf-8")
    except Exception:  # any failure just means "unknown"
        return None
