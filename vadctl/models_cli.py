"""`vad train` and `vad publish`: fit a model (on a folder of normal clips, or on a camera's records
in the features topic) and publish it to the model registry as a version of a view."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path


def _cmd_train(cfg, args) -> int:
    from models.train import Progress, fit_clips, train

    if args.from_kafka:
        from models.from_kafka import read_camera

        if not args.camera or not args.since:
            raise ValueError("--from-kafka needs --camera ID and --since WHEN")
        from vad.edge.digest import describe, settings_digest
        from vad.follow import parse_since

        progress, t0, now_ms = Progress(), time.monotonic(), int(time.time() * 1000)
        since = parse_since(args.since, now_ms)
        until = parse_since(args.until, now_ms) if args.until else None
        edge = cfg.edge_settings(args.camera)  # what the camera's edge computes: the card records it
        progress(f"reading {cfg.kafka.topics.features} for camera {args.camera}")
        got = read_camera(cfg, args.camera, since, until, edge_digest=settings_digest(edge))
        frames = sum(len(g) for g in got.clips.values())
        progress(
            f"{got.records} records, {len(got.clips)} clips, {frames} frames, {got.skipped} skipped, "
            f"{got.other_settings} of other edge settings"
        )
        if not got.clips:
            other = (
                f"; {got.other_settings} were computed with other edge settings than this configuration's "
                f"for the camera ({describe(edge)}): train with the settings its edge runs with"
                if got.other_settings
                else ""
            )
            raise ValueError(
                f"no usable records of camera {args.camera!r} in {cfg.kafka.topics.features} since {args.since}{other}"
            )
        if (edge.grid_rows, edge.grid_cols) != got.grid:
            raise ValueError(
                f"the records' grid is {got.grid}, the camera's edge settings make {edge.grid_rows}x{edge.grid_cols}"
            )
        source = f"kafka:{cfg.kafka.topics.features}/{args.camera}"
        card = fit_clips(
            got.clips, got.times, Path(args.out), edge, args.model, cfg.detect, progress, source, t0, got.frame_size
        )
    elif args.data is None:
        raise ValueError("give --data DIR (a folder with train/) or --from-kafka --camera ID --since WHEN")
    elif args.mil:
        from models.train import train_mil

        if not args.clip_labels:
            raise ValueError("--mil needs --clip-labels FILE")
        card = train_mil(Path(args.data), Path(args.out), cfg.edge, Path(args.clip_labels), detect=cfg.detect)
    else:
        card = train(Path(args.data), Path(args.out), cfg.edge, kind=args.model, detect=cfg.detect)
    print(json.dumps({"model": str(Path(args.out) / "model.onnx"), "version": card.model_version}))
    return 0


def _cmd_publish(cfg, args) -> int:
    from models.check import check_model
    from models.registry import publish

    if cfg.job.model_registry is None:
        raise ValueError("job.model_registry is null: set it to the registry folder")
    model_dir = Path(args.model)
    check_model(model_dir / "model.onnx")  # a version the job would refuse is not published
    version = args.version or datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    v = publish(model_dir, cfg.resolve(cfg.job.model_registry), args.view, version)
    print(json.dumps({"view": v.view, "version": v.version, "model": str(v.model_path)}))
    return 0


def add_model_commands(sub) -> None:
    s = sub.add_parser("train", help="train a model on DIR/train (or a camera's records in Kafka); ONNX + card to OUT")
    s.add_argument("--data", default=None, help="a folder with train/ (normal clips)")
    s.add_argument("--out", required=True)
    s.add_argument(
        "--model",
        default="scalep",
        choices=["scalep", "scalep_dir", "baseline", "convae"],
        help="scorer to fit (default scalep; scalep_dir adds a per-cell direction term)",
    )
    s.add_argument("--mil", action="store_true", help="weakly supervised: multiple instance learning on clip labels")
    s.add_argument("--clip-labels", default=None, help='with --mil: {"clips": {"train/a.mp4": 0, "test/b.mp4": 1}}')
    s.add_argument(
        "--from-kafka", action="store_true", help="fit on the camera's records in the features topic: no video needed"
    )
    s.add_argument("--camera", default=None, help="with --from-kafka: the camera whose normal activity to learn")
    s.add_argument("--since", default=None, help="with --from-kafka: ISO time or span back from now (24h, 7d)")
    s.add_argument("--until", default=None, help="with --from-kafka: end (ISO time or span back); default: now")
    s.set_defaults(fn=_cmd_train)
    s = sub.add_parser("publish", help="publish a trained model (DIR with model.onnx + card.json) as a view's version")
    s.add_argument("--model", required=True, help="the folder `vad train --out` wrote")
    s.add_argument("--view", required=True, help="the view: the cameras with `cameras.<id>.view` of that name use it")
    s.add_argument("--version", default=None, help="version name (default: the UTC time as YYYYMMDDTHHMMSS)")
    s.set_defaults(fn=_cmd_publish)
