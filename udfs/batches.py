"""A scoring shard's micro-batch as the Python worker receives it, and the dead-letter message of a
record it cannot score. The batch layout is written in the JVM by ``io.github.vad.flink.BatchRecords``
(``jobs/jvm_operators.py`` wires it): uint32 count, then uint32 length and the bytes of each record,
little-endian."""

from __future__ import annotations

import base64
import struct
import time

from vad.records import DeadLetter
from vad.schema import SchemaError, peek_camera_id

_U32 = struct.Struct("<I")


def pack_batch(items: list[bytes]) -> bytes:
    """The batch layout written by ``BatchRecords.pack`` in the JVM, for tests and tools."""
    return b"".join([_U32.pack(len(items)), *(_U32.pack(len(b)) + bytes(b) for b in items)])


def unpack_batch(blob: bytes) -> list[bytes]:
    """The records of one batch (layout: ``BatchRecords.pack``: uint32 count, then uint32 length and
    the bytes of each record, little-endian); ValueError, naming what is wrong, for any other bytes."""
    view = memoryview(blob)
    end = len(view)
    if end < 4:
        raise ValueError(f"batch of {end} bytes: too short for its record count")
    (n,), pos, out = _U32.unpack_from(view, 0), 4, []
    for i in range(n):
        # A record past the end is refused as such (ValueError, like any malformed batch), not left
        # to struct.error or a short slice.
        size = _U32.unpack_from(view, pos)[0] if pos + 4 <= end else end
        pos += 4
        if pos + size > end:
            raise ValueError(f"batch of {n} records: record {i} runs past the batch's {end} bytes")
        out.append(bytes(view[pos : pos + size]))
        pos += size
    if pos != end:
        raise ValueError(f"batch of {n} records: {end - pos} bytes left over")
    return out


def dead_letter(raw: bytes, err: SchemaError) -> str:
    """The dead-letter message (``DeadLetter``, as JSON) of a record the job cannot score."""
    return DeadLetter(
        reason=err.reason,
        detail=err.detail,
        camera_id=peek_camera_id(raw) if isinstance(raw, (bytes, bytearray)) else None,
        size=len(raw) if raw is not None else 0,
        payload_b64=base64.b64encode(bytes(raw[: DeadLetter.SAMPLE_BYTES])).decode() if raw else "",
        seen_ms=int(time.time() * 1000),
    ).to_json()
