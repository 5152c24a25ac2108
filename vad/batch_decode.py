"""Decode a batch of wire records at once: what the scoring operator does with every batch.

``schema.decode`` handles one record; per record, unpacking its sparse mask and checking its values
for NaN/inf are a few numpy calls each, and numpy's cost per call (~1 µs) dominated: profiled, decode
took 18 of the operator's 22 µs per record. Here the headers are still parsed one by one (cheap
struct unpacking), but the masks, the values and the finiteness check run once per batch, over the
records that share a grid size. The results are those of ``decode`` record by record: the same
records, and the same reason for each malformed one (tests/unit/test_batch_decode.py).
"""

from __future__ import annotations

import numpy as np

from vad.schema import (
    FLAG_SPARSE,
    N_CHANNELS,
    FrameFeatures,
    Head,
    SchemaError,
    parse_head,
    record_of,
    sparse_length_error,
)


def decode_batch(items: list[bytes]) -> tuple[list[tuple[int, FrameFeatures]], list[tuple[int, SchemaError]]]:
    """([(index in items, record)] of the valid ones, [(index in items, error)] of the malformed
    ones), each in input order."""
    errors: list[tuple[int, SchemaError]] = []
    groups: dict[tuple[bool, int, str], list[tuple[int, bytes, Head]]] = {}
    for i, raw in enumerate(items):
        try:
            hd = parse_head(raw)
        except SchemaError as e:
            errors.append((i, e))
            continue
        # A view: the slices below then copy each record once, into the joined buffer.
        groups.setdefault((bool(hd.flags & FLAG_SPARSE), hd.size, hd.dtype), []).append((i, memoryview(raw), hd))
    out: list[tuple[int, FrameFeatures]] = []
    for (sparse, size, dtype), group in groups.items():
        if sparse:
            group, values, finite = _sparse_group(group, size, dtype, errors)
        else:
            wire = np.frombuffer(b"".join(raw[hd.start :] for _, raw, hd in group), dtype).reshape(-1, size)
            values = wire.astype(np.float32, copy=False)
            finite = np.isfinite(values).all(axis=1)
        for (i, _, hd), flat, ok in zip(group, values, finite, strict=True):
            rec = record_of(hd, flat.reshape(hd.rows, hd.cols, N_CHANNELS))
            try:
                rec.validate_meta()  # what decode's validate() checks before the values
                if not ok:
                    raise SchemaError("non_finite", "features contain NaN or infinity")
            except SchemaError as e:
                errors.append((i, e))
                continue
            out.append((i, rec))
    out.sort(key=lambda t: t[0])
    errors.sort(key=lambda t: t[0])
    return out, errors


def _sparse_group(group: list, size: int, dtype: str, errors: list) -> tuple[list, np.ndarray, np.ndarray]:
    """(records, values [k, size], finite [k]) of the sparse records of one grid size and value
    type whose masks match their lengths."""
    mask_bytes = (size + 7) // 8
    masks = np.frombuffer(b"".join(raw[hd.start : hd.start + mask_bytes] for _, raw, hd in group), np.uint8)
    masks = masks.reshape(len(group), mask_bytes)
    bits = np.unpackbits(masks, axis=1, count=size, bitorder="little").view(bool)
    # Set bits counted on the packed masks (padding bits are checked below): a bool reduction
    # over the unpacked [k, size] took longer than the unpacking itself.
    nnz = np.bitwise_count(masks).sum(axis=1, dtype=np.int64)
    if size % 8:  # padding bits past the last value are not values (and must be clear: below)
        nnz -= np.bitwise_count(masks[:, -1] >> (size % 8))
    want = np.array([hd.start for _, _, hd in group]) + mask_bytes + np.dtype(dtype).itemsize * nnz
    lengths = np.array([len(raw) for _, raw, _ in group])
    ok = lengths == want
    if size % 8:  # padding bits must be clear
        ok &= (masks[:, -1] >> (size % 8)) == 0
    if not ok.all():
        for j in np.flatnonzero(~ok):
            errors.append((group[j][0], sparse_length_error(int(lengths[j]), int(want[j]))))
        group = [g for g, good in zip(group, ok, strict=True) if good]
        bits = bits[ok]
    values = np.zeros((len(group), size), np.float32)
    # float32 before the scatter: assigning float16 values converts inside the masked copy, slower.
    wire = np.frombuffer(b"".join(raw[hd.start + mask_bytes :] for _, raw, hd in group), dtype)
    nonzero = wire.astype(np.float32, copy=False)
    # Boolean assignment fills row by row, in the order the records' values are concatenated.
    values[bits] = nonzero
    # The zeros are finite: only the sent values need checking, and per record only if one is not.
    finite = np.isfinite(values).all(axis=1) if not np.isfinite(nonzero).all() else np.ones(len(group), bool)
    return group, values, finite
