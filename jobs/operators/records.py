"""Raw frame-feature records in the job: which scoring shard a record goes to, and the dead-letter
message of a malformed one."""

from __future__ import annotations

import base64
import json
import time
import zlib

from vad.schema import SchemaError, peek_camera_id

_SAMPLE_BYTES = 256  # enough of a bad payload to debug it, small enough for any topic


def shard_of(camera_id: str, shards: int) -> int:
    # crc32, not hash(): Python's str hash differs between worker processes.
    return zlib.crc32(camera_id.encode()) % shards


def shard_key(raw: bytes, shards: int) -> int:
    """The scoring shard of a raw record, from its header alone (malformed records go to shard of "")."""
    return shard_of(peek_camera_id(raw) or "", shards)


def dead_letter(raw: bytes, err: SchemaError) -> str:
    return json.dumps(
        {
            "reason": err.reason,
            "detail": err.detail,
            "camera_id": peek_camera_id(raw) if isinstance(raw, (bytes, bytearray)) else None,
            "size": len(raw) if raw is not None else 0,
            "payload_b64": base64.b64encode(bytes(raw[:_SAMPLE_BYTES])).decode() if raw else "",
            "seen_ms": int(time.time() * 1000),
        }
    )
