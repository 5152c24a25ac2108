"""Property-based fuzzing of the batch decoder (``vad.batch_decode.decode_batch``, what the scoring
operator runs on every batch): for any mix of valid, mutated and random records it gives what
``decode`` gives record by record (the same records, the same reason for each refused one), and
every record it accepts round-trips. Inputs per property: ``fuzzing.EXAMPLES``."""

from __future__ import annotations

from fuzzing import DECODE_REASONS, fuzz, mutated_records, random_headers, valid_records
from hypothesis import given
from hypothesis import strategies as st
from test_schema_fuzz import assert_round_trips, assert_same

from vad.batch_decode import decode_batch
from vad.schema import SchemaError, decode


@fuzz("test_batch_decode_fuzz::batches")
@given(st.lists(valid_records | mutated_records() | random_headers() | st.binary(max_size=80), max_size=8))
def test_a_batch_decodes_like_its_records_one_by_one(items):
    want_recs, want_errors = [], []
    for i, raw in enumerate(items):
        try:
            want_recs.append((i, decode(raw)))
        except SchemaError as e:
            want_errors.append((i, e.reason, str(e)))
    got_recs, got_errors = decode_batch(items)
    assert [(i, e.reason, str(e)) for i, e in got_errors] == want_errors
    assert all(e.reason in DECODE_REASONS for _, e in got_errors)
    assert [i for i, _ in got_recs] == [i for i, _ in want_recs]
    for (_, got), (_, want) in zip(got_recs, want_recs, strict=True):
        assert_same(got, want)
        assert_round_trips(got)
