"""Does a pretrained CNN's appearance of moving regions separate Ped1's slow anomalies? Post hoc:
reads test labels, to explain, never to choose.

    nice -n 19 .venv/bin/python -m research.deep_appearance [--scenes ucsd_ped1 ucsd_ped2]

Transfer from the COCO detector in ../shared/models/yolox_nano_coco: its graph is cut at the
classification branch's last hidden layer (64 channels at strides 8 and 16, what its class scores
are read from), and every frame of the edge's grey video, resized to 480x320 on both scenes, is
run through it (about 30 ms a frame on two threads; cached under /tmp/vad-deep/). A location moves
when the mean absolute difference from the previous frame over its stride block exceeds tau grey
levels. Per location, a bank holds the moving training vectors of its 3x3 neighbourhood (at most
3,000, sampled); a moving test vector scores its distance to the nearest one (AI-VAD's kind of
density over deep features, per location for perspective), a still one 0. Frame score: the max
over locations, smoothed causally (EMA 0.5) as vad.detect does; one pooled frame AUC per scene.
Also: each location's distance over its 99th percentile on held-out training clips (banks from
the even clips, distances of the odd ones), and that calibrated score combined with scalep.
``--global-bank``: instead, one bank for every location (4,000 moving training vectors, sampled), so
a walker where the training clips rarely showed one is still near a walker; distances over their
row's held-out 99th percentile for perspective (stride 16, tau 6; a few minutes once cached).
Findings: research/FINDINGS-issue26.md ("A pretrained CNN's appearance").
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from research.feature_candidates import YOLO_PATH  # noqa: E402
from research.offpath_study import scalep_baseline  # noqa: E402
from research.study_data import decode  # noqa: E402

CACHE = Path("/tmp/vad-deep")
SIZE = (480, 320)
# The classification branch's last hidden activations (after SiLU), strides 8 and 16, in the
# shared export's node names; the class scores are one 1x1 convolution of them.
HIDDEN = {8: "input.631", 16: "input.703"}
TAUS = (3.0, 6.0)
CAP = 3000


def feature_model() -> Path:
    import onnx
    from onnx.utils import Extractor

    m = onnx.load(str(YOLO_PATH))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "h", "w"
    sub = Extractor(m).extract_model(["images"], list(HIDDEN.values()))
    for o in sub.graph.output:
        for i in (2, 3):
            o.type.tensor_type.shape.dim[i].dim_param = f"d{i}"
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "yolox_nano_hidden.onnx"
    onnx.save(sub, str(path))
    return path


def extract(scene: str) -> None:
    """Per clip: hidden features and frame-difference maps at both strides, float16."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    sess = ort.InferenceSession(str(feature_model()), so, providers=["CPUExecutionProvider"])
    for split in ("train", "test"):
        for name, frames in decode(scene, split).items():
            out = CACHE / f"{scene}_{name}.npz"
            if out.exists():
                continue
            t0, feats, diffs, prev = time.process_time(), {8: [], 16: []}, {8: [], 16: []}, None
            for g in frames:
                img = cv2.resize(g, SIZE, interpolation=cv2.INTER_LINEAR).astype(np.float32)
                hidden = sess.run(None, {"images": np.repeat(img[None, None], 3, axis=1)})
                for s, f in zip(HIDDEN, hidden, strict=True):
                    feats[s].append(f[0].transpose(1, 2, 0).astype(np.float16))
                d = np.zeros_like(img) if prev is None else np.abs(img - prev)
                prev = img
                for s in HIDDEN:
                    small = (SIZE[0] // s, SIZE[1] // s)
                    diffs[s].append(cv2.resize(d, small, interpolation=cv2.INTER_AREA).astype(np.float16))
            arrays = {f"f{s}": np.stack(feats[s]) for s in HIDDEN} | {f"m{s}": np.stack(diffs[s]) for s in HIDDEN}
            np.savez(out, **arrays)
            ms = (time.process_time() - t0) / len(frames) * 1000
            print(json.dumps({"clip": f"{scene}/{name}", "cpu_ms_per_frame": round(ms, 1)}), flush=True)


def load(scene: str, prefix: str, stride: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for f in sorted(CACHE.glob(f"{scene}_{prefix}*.npz")):
        z = np.load(f)
        out.append((z[f"f{stride}"].astype(np.float32), z[f"m{stride}"].astype(np.float32)))
    return out


def _unit(f: np.ndarray, l2: bool) -> np.ndarray:
    return f / (np.linalg.norm(f, axis=-1, keepdims=True) + 1e-6) if l2 else f


def _block(a: np.ndarray, i: int, j: int) -> np.ndarray:
    return a[:, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2]


def banks(train, tau: float, l2: bool, rng: np.random.Generator) -> dict:
    f = np.concatenate([_unit(x, l2) for x, _ in train])
    moving = np.concatenate([m for _, m in train]) > tau
    out = {}
    for i in range(f.shape[1]):
        for j in range(f.shape[2]):
            v = _block(f, i, j)[_block(moving, i, j)]
            out[i, j] = v[rng.choice(len(v), CAP, replace=False)] if len(v) > CAP else v
    return out


def distances(clips, bank: dict, tau: float, l2: bool, empty: float) -> list[np.ndarray]:
    """Per clip [frames, rows, cols]: nearest-neighbour distance of moving vectors, 0 elsewhere."""
    res = []
    for f, m in clips:
        f, moving = _unit(f, l2), m > tau
        s = np.zeros(moving.shape, np.float32)
        for (i, j), b in bank.items():
            idx = np.nonzero(moving[:, i, j])[0]
            if not len(idx):
                continue
            if not len(b):
                s[idx, i, j] = empty
                continue
            q = f[idx, i, j]
            d2 = (q * q).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * q @ b.T
            s[idx, i, j] = np.sqrt(np.maximum(d2.min(1), 0))
        res.append(s)
    return res


def per_location_q99(held_clips, held: np.ndarray, tau: float) -> np.ndarray:
    """Each location's 99th percentile of `held` ([frames, rows, cols], the held-out clips' distances)
    over its 3x3 neighbourhood's moving vectors; the overall one where fewer than 50."""
    moving = np.concatenate([m for _, m in held_clips]) > tau
    overall = float(np.percentile(held[moving], 99))
    q = np.full(held.shape[1:], overall, np.float32)
    for i in range(q.shape[0]):
        for j in range(q.shape[1]):
            v = _block(held, i, j)[_block(moving, i, j)]
            if len(v) >= 50:
                q[i, j] = np.percentile(v, 99)
    return q


def study(scene: str) -> dict:
    rng = np.random.default_rng(0)
    _, auc, sp, sp_q99 = scalep_baseline(scene)
    out = {"scalep": auc(sp)}
    for stride in HIDDEN:
        train, test = load(scene, "Train", stride), load(scene, "Test", stride)
        bank = {}
        for l2 in (False, True):
            for tau in TAUS:
                bank[l2, tau] = banks(train, tau, l2, rng)
                d = distances(test, bank[l2, tau], tau, l2, empty=0.0)
                out[f"stride {stride}, {'cosine' if l2 else 'L2'}, tau {tau:g}"] = auc([x.max(axis=(1, 2)) for x in d])
        tau, odd = max(TAUS), train[1::2]
        held = np.concatenate(distances(odd, banks(train[0::2], tau, False, rng), tau, False, 0.0))
        q = per_location_q99(odd, held, tau)
        k_q99 = np.percentile((held / q).max(axis=(1, 2)), 99)
        cal = [(x / q).max(axis=(1, 2)) for x in distances(test, bank[False, tau], tau, False, 2.0)]
        out[f"stride {stride}, per-location q99, tau {tau:g}"] = auc(cal)
        pairs = [(a / sp_q99, b / k_q99) for a, b in zip(sp, cal, strict=True)]
        out[f"max(scalep, stride {stride} q99)"] = auc([np.maximum(a, b) for a, b in pairs])
        out[f"mean(scalep, stride {stride} q99)"] = auc([(a + b) / 2 for a, b in pairs])
    return out


def _nearest(q: np.ndarray, bank: np.ndarray, chunk: int = 20_000) -> np.ndarray:
    bb = (bank * bank).sum(1)
    out = np.empty(len(q), np.float32)
    for i in range(0, len(q), chunk):
        x = q[i : i + chunk]
        out[i : i + chunk] = np.sqrt(np.maximum(((x * x).sum(1)[:, None] + bb[None] - 2 * x @ bank.T).min(1), 0))
    return out


def global_distances(clips, bank: np.ndarray, tau: float, l2: bool) -> list[np.ndarray]:
    res = []
    for f, m in clips:
        moving, s = m > tau, np.zeros(m.shape, np.float32)
        s[moving] = _nearest(_unit(f, l2)[moving], bank)
        res.append(s)
    return res


def global_study(scene: str, stride: int = 16, tau: float = 6.0, size: int = 4000) -> dict:
    rng = np.random.default_rng(0)
    _, auc, sp, sp_q99 = scalep_baseline(scene)
    train, test = load(scene, "Train", stride), load(scene, "Test", stride)
    out = {"scalep": auc(sp)}
    for l2 in (False, True):
        name = f"global bank, stride {stride}, {'cosine' if l2 else 'L2'}, tau {tau:g}"

        def bank(clips, l2=l2):
            f = np.concatenate([_unit(x, l2)[m > tau] for x, m in clips])
            return f[rng.choice(len(f), min(size, len(f)), replace=False)]

        d = global_distances(test, bank(train), tau, l2)
        out[name] = auc([x.max(axis=(1, 2)) for x in d])
        odd = train[1::2]
        held = global_distances(odd, bank(train[0::2]), tau, l2)
        h, moving = np.concatenate(held), np.concatenate([m for _, m in odd]) > tau
        overall = np.percentile(h[moving], 99)
        rows = np.array(
            [
                np.percentile(h[:, r][moving[:, r]], 99) if moving[:, r].sum() >= 50 else overall
                for r in range(h.shape[1])
            ],
            np.float32,
        )[None, :, None]
        cal = [(x / rows).max(axis=(1, 2)) for x in d]
        k_q99 = np.percentile(np.concatenate([(x / rows).max(axis=(1, 2)) for x in held]), 99)
        pairs = [(a / sp_q99, b / k_q99) for a, b in zip(sp, cal, strict=True)]
        out[f"{name}, over its row's held-out q99"] = auc(cal)
        out[f"max / mean(scalep, that), {'cosine' if l2 else 'L2'}"] = (
            auc([np.maximum(a, b) for a, b in pairs]),
            auc([(a + b) / 2 for a, b in pairs]),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", nargs="+", default=["ucsd_ped1", "ucsd_ped2"])
    ap.add_argument("--global-bank", action="store_true", help="one bank for every location (see above)")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    for scene in args.scenes:
        extract(scene)
        print(json.dumps({scene: (global_study if args.global_bank else study)(scene)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
