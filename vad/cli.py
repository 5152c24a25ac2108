"""The `vad` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from vad.config import ConfigError, dump_config, load_config

log = logging.getLogger("vad")


def _cmd_stack(cfg, args) -> int:
    from vad import stack

    result = {"up": stack.up, "down": stack.down, "status": stack.status}[args.action](cfg)
    for name, state in result.items():
        print(f"{name}: {state}")
    return 0


def _cmd_produce(cfg, args) -> int:
    from vad.edge.producer import produce

    stats = produce(cfg, args.camera, args.source, limit=args.limit)
    print(json.dumps({"camera_id": args.camera, **stats.as_dict()}))
    return 0 if stats.failed == 0 else 1


def _cmd_run(cfg, args) -> int:
    from jobs.anomaly_job import main as job_main

    argv = ["--config", args.config] if args.config else []
    job_main(argv)
    return 0


def _cmd_events(cfg, args) -> int:
    from vad.consumer import read_events, summarise

    got = read_events(cfg, timeout_s=args.timeout, expect=args.expect)
    if not args.quiet:
        for src in ("kafka", "redis"):
            for e in got[src]:
                print(f"[{src}] {json.dumps(e, separators=(',', ':'))[:400]}")
    print(json.dumps(summarise(got)))
    return 0


def _cmd_train(cfg, args) -> int:
    from models.train import train

    card = train(Path(args.data), Path(args.out), cfg.edge, window=cfg.job.window)
    print(json.dumps({"model": str(Path(args.out) / "model.onnx"), "version": card.model_version}))
    return 0


def _cmd_demo(cfg, args) -> int:
    from vad.demo import run_demo

    return run_demo(cfg, args.config)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vad", description="Real-time video anomaly detection on Flink.")
    p.add_argument("--config", default=None, help="YAML config file; VAD_* environment variables override it")
    p.add_argument("--validate-config", action="store_true", help="check the config, print it, exit")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("stack", help="start/stop the local Kafka broker and Redis server")
    s.add_argument("action", choices=["up", "down", "status"])
    s.set_defaults(fn=_cmd_stack)
    s = sub.add_parser("produce", help="stream a video source's motion features to Kafka")
    s.add_argument("--camera", required=True)
    s.add_argument("--source", required=True, help="file path, stream URL, or device number")
    s.add_argument("--limit", type=int, default=None, help="stop after this many sampled frames")
    s.set_defaults(fn=_cmd_produce)
    s = sub.add_parser("run", help="run the Flink job (local mini-cluster unless submitted)")
    s.set_defaults(fn=_cmd_run)
    s = sub.add_parser("events", help="read anomaly events back from Kafka and Redis")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for events")
    s.add_argument("--expect", type=int, default=None, help="stop early once this many Kafka events arrived")
    s.add_argument("--quiet", action="store_true", help="summary only")
    s.set_defaults(fn=_cmd_events)
    s = sub.add_parser("train", help="train a model on DIR/train and export ONNX + card to OUT")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=_cmd_train)
    s = sub.add_parser("demo", help="end to end on the embedded stack (what `make demo` runs)")
    s.set_defaults(fn=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("kafka", "py4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    if args.validate_config:
        print(dump_config(cfg), end="")
        print("config OK", file=sys.stderr)
        return 0
    if not getattr(args, "fn", None):
        parser().print_help()
        return 2
    try:
        return args.fn(cfg, args)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"vad {args.cmd}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
