"""Decode and validate raw frame-feature records; malformed ones go to the dead-letter output."""

from __future__ import annotations

import base64
import json
import time
import zlib

from pyflink.common import Types
from pyflink.datastream import OutputTag, ProcessFunction, RuntimeContext

from vad.schema import SchemaError, decode, peek_camera_id

DEAD_LETTER = OutputTag("dead-letter", Types.STRING())
_SAMPLE_BYTES = 256  # enough of a bad payload to debug it, small enough for any topic


def shard_of(camera_id: str, shards: int) -> int:
    # crc32, not hash(): Python's str hash differs between worker processes.
    return zlib.crc32(camera_id.encode()) % shards


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


class DecodeValidate(ProcessFunction):
    """bytes -> (shard, camera, frame index, ts ms, gap, grid float32 [R, C, F])."""

    def __init__(self, shards: int):
        self.shards = shards

    def open(self, runtime_context: RuntimeContext):
        g = runtime_context.get_metrics_group().add_group("vad")
        self.records_in = g.counter("records_in")
        self.dead_letters = g.counter("vad_dead_letters")

    def process_element(self, value, ctx: ProcessFunction.Context):
        self.records_in.inc()
        try:
            rec = decode(bytes(value) if value is not None else value)
        except SchemaError as e:
            self.dead_letters.inc()
            yield DEAD_LETTER, dead_letter(value, e)
            return
        yield (shard_of(rec.camera_id, self.shards), rec.camera_id, rec.frame_index, rec.ts_ms, rec.gap, rec.features)
