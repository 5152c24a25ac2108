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
    groups: dict[tuple[bool, int], list[tuple[int, bytes, Head]]] = {}
    for i, raw in enumerate(items):
        try:
            hd = parse_head(raw)
        except SchemaError as e:
            errors.append((i, e))
            continue
        # A view: the slices below then copy each record once, into the joined buffer.
        groups.setdefault((bool(hd.flags & FLAG_SPARSE), hd.size), []).append((i, memoryview(raw), hd))
    out: list[tuple[int, FrameFeatures]] = []
    for (sparse, size), group in groups.items():
        if sparse:
            group, values = _sparse_group(group, size, errors)
        else:
            values = np.frombuffer(b"".join(raw[hd.start :] for _, raw, hd in group), "<f4").reshape(-1, size)
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


def _sparse_group(group: list, size: int, errors: list) -> tuple[list, np.ndarray]:
    """Values [k, size] of the sparse records of one grid size whose masks match their lengths."""
    mask_bytes = (size + 7) // 8
    masks = np.frombuffer(b"".join(raw[hd.start : hd.start + mask_bytes] for _, raw, hd in group), np.uint8)
    masks = masks.reshape(len(group), mask_bytes)
    bits = np.unpackbits(masks, axis=1, count=size, bitorder="little").view(bool)
    nnz = np.count_nonzero(bits, axis=1)
    want = np.array([hd.start for _, _, hd in group]) + mask_bytes + 4 * nnz
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
    # Boolean assignment fills row by row, in the order the records' values are concatenated.
    values[bits] = np.frombuffer(b"".join(raw[hd.start + mask_bytes :] for _, raw, hd in group), "<f4")
    return group, values
