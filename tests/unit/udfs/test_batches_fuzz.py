"""Property-based fuzzing of the JVM -> Python batch framing (``udfs.batches.unpack_batch``, the
reader of ``BatchRecords.pack``) and of the dead letter the job writes for a refused record. Inputs
per property: ``fuzzing.EXAMPLES``."""

from __future__ import annotations

import base64
import struct

import pytest
from fuzzing import DECODE_REASONS, fuzz, mutated_records, valid_records
from hypothesis import given
from hypothesis import strategies as st
from published_schemas import check

from udfs.batches import dead_letter, pack_batch, unpack_batch
from vad.records import DeadLetter
from vad.schema import SchemaError, decode, peek_camera_id


def check_unpack(blob: bytes) -> None:
    """A batch is either refused with a ValueError naming what is wrong, or is exactly the framing
    of the records it yields."""
    try:
        items = unpack_batch(blob)
    except ValueError as e:
        assert str(e).startswith("batch")
        return
    assert pack_batch(items) == bytes(blob)


items_lists = st.lists(st.binary(max_size=60) | valid_records, max_size=6)


@fuzz("test_batches_fuzz::random_blobs")
@given(
    st.binary(max_size=200)
    | st.builds(lambda n, rest: struct.pack("<I", n) + rest, st.integers(0, 2**32 - 1), st.binary(max_size=100))
    | st.builds(lambda n, rest: struct.pack("<I", n) + rest, st.integers(0, 4), st.binary(max_size=100))
)
def test_random_blobs_are_refused_cleanly_or_reframe_exactly(blob):
    check_unpack(blob)


@fuzz("test_batches_fuzz::packed_batches")
@given(items_lists, st.data())
def test_packed_batches_unpack_to_their_records_and_mutations_are_refused_cleanly(items, data):
    blob = pack_batch(items)
    assert unpack_batch(blob) == items
    how = data.draw(st.sampled_from(["truncate", "extend", "flip", "count", "length"]))
    b = bytearray(blob)
    if how == "truncate":
        b = b[: data.draw(st.integers(0, len(b) - 1))]
    elif how == "extend":
        b += data.draw(st.binary(min_size=1, max_size=8))
    elif how == "flip":
        pos = data.draw(st.integers(0, len(b) * 8 - 1))
        b[pos // 8] ^= 1 << (pos % 8)
    elif how == "count":
        struct.pack_into("<I", b, 0, data.draw(st.integers(0, 2**32 - 1)))
    elif items:  # one record's length field
        offset = 4 + sum(4 + len(x) for x in items[: data.draw(st.integers(0, len(items) - 1))])
        struct.pack_into("<I", b, offset, data.draw(st.integers(0, 2**32 - 1)))
    check_unpack(bytes(b))


@fuzz("test_batches_fuzz::dead_letters")
@given(mutated_records() | st.binary(max_size=400))
def test_every_refused_record_becomes_a_valid_dead_letter(raw):
    try:
        decode(raw)
    except SchemaError as e:
        text = dead_letter(raw, e)
    else:
        return
    letter = DeadLetter.parse(text)
    check(DeadLetter, text)
    assert letter.reason in DECODE_REASONS and letter.size == len(raw)
    assert letter.camera_id == peek_camera_id(raw)
    assert base64.b64decode(letter.payload_b64) == raw[: DeadLetter.SAMPLE_BYTES]


# Blobs the fuzzing found that raised struct.error (not a ValueError), kept as regression tests; and
# a record longer than the batch, which was sliced short and only caught as "-3 bytes left over".
UNPACK_REGRESSIONS = [
    b"",
    b"\x01\x00",
    b"\x02\x00\x00\x00",
    b"\x01\x00\x00\x00\x05",
    b"\x01\x00\x00\x00\x05\x00\x00\x00ab",
]


@pytest.mark.parametrize("blob", UNPACK_REGRESSIONS)
def test_truncated_batches_are_refused_with_a_value_error(blob):
    with pytest.raises(ValueError, match=r"^batch"):
        unpack_batch(blob)
