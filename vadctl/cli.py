"""The `vad` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from vad.config import REPO_ROOT, ConfigError, dump_config, load_config
from vad.dead_letters import add_arguments as dead_letters_arguments
from vad.follow import add_arguments as add_follow_arguments
from vadctl.job_failures import first_failure, root_cause
from vadctl.models_cli import add_model_commands

log = logging.getLogger("vad")


def _cmd_stack(cfg, args) -> int:
    from vadctl import cluster, stack

    result = {}
    if args.action == "down":
        result.update(cluster.down(cfg))  # first: a running job still writes to the broker and Redis
    result.update({"up": stack.up, "down": stack.down, "status": stack.status}[args.action](cfg))
    if args.action == "status" or (args.action == "up" and args.cluster):
        result.update({"up": cluster.up, "status": cluster.status}[args.action](cfg))
    for name, state in result.items():
        print(f"{name}: {state}")
    return 0


def _cmd_cluster(cfg, args) -> int:
    from vadctl import cluster

    result = {"up": cluster.up, "down": cluster.down, "status": cluster.status}[args.action](cfg)
    for name, state in result.items():
        print(f"{name}: {state}")
    if "flink=" in result.get("flink-rest", ""):  # status, and the REST endpoint answered
        for j in cluster.jobs(cfg):
            print(f"job {j['jid']} {j['state']} {j['name']}")
    return 0


def _cmd_submit(cfg, args) -> int:
    from jobs.model_check import check_model
    from vadctl import cluster

    # Here too, not only in the job's main() that `flink run` starts: its error would come back
    # buried in the client's output.
    try:
        check_model(cfg)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    job_id = cluster.submit(cfg, args.config, args.from_savepoint, args.allow_non_restored_state)
    if args.wait:
        cluster.wait_state(cfg, job_id, {"RUNNING"}, cfg.cluster.submit_timeout_s, all_tasks=True)
    print(job_id)
    return 0


def _cmd_savepoint(cfg, args) -> int:
    from vadctl import cluster

    print(cluster.savepoint(cfg, args.job_id, args.dir))
    return 0


def _cmd_cancel(cfg, args) -> int:
    from vadctl import cluster

    if args.savepoint:
        print(cluster.stop(cfg, args.job_id, args.dir, drain=args.drain))
    else:
        cluster.cancel(cfg, args.job_id)
        print(f"cancelled {args.job_id}")
    return 0


def _access_ok(cmd: str, cfg) -> bool:
    """Log in to Kafka and Redis once before the job starts: a refused login or a TLS mismatch is one
    line naming the setting, not a job restarting (or a Redis writer holding events back) for ever.
    A server that does not answer yet is only a warning: the job's clients wait for it."""
    from vad.access_check import AccessError, check_kafka, check_redis

    for check, section in ((check_kafka, cfg.kafka), (check_redis, cfg.redis)):
        try:
            check(section)
        except AccessError as e:
            if e.definitive:
                print(f"vad {cmd}: error: {e}", file=sys.stderr)
                return False
            log.warning("%s; starting anyway (the clients retry)", e)
        except FileNotFoundError as e:
            print(f"vad {cmd}: error: {e}", file=sys.stderr)
            return False
    return True


def _cmd_produce(cfg, args) -> int:
    from vad.edge.producer import produce, produce_all

    if args.limit is not None and args.limit < 1:
        print("vad produce: --limit must be >= 1", file=sys.stderr)
        return 2
    if args.all == bool(args.camera):
        print("vad produce: give either --camera ID [--source SRC] or --all", file=sys.stderr)
        return 2
    from jobs.model_check import edge_settings_warnings

    # Where the model is at hand (one machine, or a shared checkout), say now what the job would
    # dead-letter later.
    for line in edge_settings_warnings(cfg, sorted(cfg.cameras) if args.all else [args.camera]):
        logging.getLogger("vad.produce").warning("%s", line)
    if args.all:
        workers = produce_all(cfg, limit=args.limit, realtime=args.realtime)
        rc = 0
        for w in workers:
            print(json.dumps({"camera_id": w.camera_id, **w.stats.as_dict(), "error": str(w.error or "") or None}))
            rc = rc or int(w.error is not None or w.stats.failed > 0)
        return rc
    stats = produce(cfg, args.camera, args.source, limit=args.limit, realtime=args.realtime)
    print(json.dumps({"camera_id": args.camera, **stats.as_dict()}))
    return 0 if stats.failed == 0 else 1


# Before a failed run's last cause: where the failures before it are (read back by tests), and
# the first of them when it is another.
JOB_LOG_LINE = "vad run: every failure and restart of the job is in its log: "
FIRST_FAILURE_LINE = "vad run: the first failure, which started the restarts: "


def _cmd_run(cfg, args) -> int:
    from jobs.model_check import check_model

    try:  # before the job's module is imported: PyFlink's import logs
        check_model(cfg)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    if not _access_ok("run", cfg):
        return 2
    from jobs.anomaly_job import run

    try:
        run(cfg)  # checked above: the job's own main() would load and check it again
    except Exception as e:  # the job failed (a Py4JJavaError with Flink's whole trace)
        traceback.print_exc()
        # The error is the last failure only; after restarts, the one that started them is in the log.
        last, first = root_cause(str(e)), None
        if log_dir := os.environ.get("FLINK_LOG_DIR"):
            print(f"{JOB_LOG_LINE}{log_dir}", file=sys.stderr)
            first = first_failure(Path(log_dir))
        if first is not None and first != last:
            print(f"{FIRST_FAILURE_LINE}{first}", file=sys.stderr)
        print(f"vad run: error: the job failed: {last}", file=sys.stderr)
        return 1
    return 0


def _cmd_events(cfg, args) -> int:
    from vad import follow
    from vad.consumer import read_events, summarise

    if follow.wanted(args):
        return follow.run(cfg, args)
    got = read_events(cfg, timeout_s=args.timeout, expect=args.expect)
    if not args.quiet:
        for src in ("kafka", "redis"):
            for e in got[src]:
                print(f"[{src}] {e.to_json()[:400]}")
    print(json.dumps(summarise(got)))
    return 0


def _cmd_dead_letters(cfg, args) -> int:
    from vad import dead_letters

    return dead_letters.run(cfg, args)


def _cmd_schemas(cfg, args) -> int:
    from vad.records import stale_schemas, write_schemas

    folder = Path(args.dir)
    if args.check:
        stale = stale_schemas(folder)
        for name in stale:
            print(f"{folder / name}: differs from vad/records.py (run: vad schemas)", file=sys.stderr)
        return int(bool(stale))
    for path in write_schemas(folder):
        print(path)
    return 0


def _cmd_evaluate(cfg, args) -> int:
    from models.evaluate import evaluate

    model = Path(args.model) if args.model else cfg.resolve(cfg.job.model_path)
    raw: dict = {}
    report = evaluate(Path(args.data), model, cfg, Path(args.out) if args.out else None, raw=raw)
    if args.streaming:
        from models.evaluate_streaming import evaluate_streaming

        report = evaluate_streaming(Path(args.data), model, cfg, offline=raw)
    keys = [
        "frame_auc",
        "pr_auc",
        "eer",
        "f1",
        "false_alarms_per_hour",
        "event_recall",
        "mean_delay_s",
        "episodes_per_interval",
        "false_episodes_per_hour",
        "first_alert_delay_s",
        "median_first_alert_delay_s",
        "frames",
        "clips",
        "threshold",
    ]
    if args.streaming:
        keys += ["max_abs_diff_vs_in_process", "wire_precision"]
    for name, clip in report["per_clip"].items():
        print(f"{name}: {json.dumps(clip)}")
    print(json.dumps({k: report[k] for k in keys}))
    return 0


def _cmd_ui(cfg, args) -> int:
    from vad.ui.server import serve

    if args.port is not None and not 1 <= args.port <= 65535:
        print("vad ui: --port must be 1-65535", file=sys.stderr)
        return 2
    return serve(cfg, host=args.host, port=args.port)


def _cmd_demo(cfg, args) -> int:
    from vadctl.demo import review_page_hint, run_demo

    rc = run_demo(cfg, args.config)
    if rc == 0:
        print(review_page_hint(cfg), flush=True)
    return rc


CONFIG_TARGETS = {"yaml": REPO_ROOT / "config" / "default.yaml", "markdown": REPO_ROOT / "docs" / "configuration.md"}


def _cmd_config(cfg, args) -> int:
    from vad.config import load_config_with_sources
    from vad.config import render as r

    if args.action == "show":
        cfg, sources = load_config_with_sources(args.config)
        fmt = args.format or "table"
        if fmt not in ("yaml", "table"):
            raise ValueError(f"`config show` prints yaml or table, not {fmt}")
        print((r.show_yaml if fmt == "yaml" else r.show_table)(cfg, sources), end="")
        return 0
    fmt = args.format or "yaml"
    if fmt not in CONFIG_TARGETS:
        raise ValueError(f"`config defaults` writes yaml or markdown, not {fmt}")
    text = r.defaults_yaml() if fmt == "yaml" else r.defaults_markdown()
    target = CONFIG_TARGETS[fmt]
    if fmt == "markdown" and (args.write or args.check):
        text = r.replace_generated(target.read_text(), text)
    if args.check:
        if target.read_text() != text:
            print(
                f"{target}: differs from vad/config/ (run: vad config defaults --format {fmt} --write)",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.write:
        target.write_text(text)
        print(target)
        return 0
    print(text, end="")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vad", description="Real-time video anomaly detection on Flink.")
    p.add_argument("--config", default=None, help="YAML config file; VAD_* environment variables override it")
    p.add_argument("--validate-config", action="store_true", help="check the config, print it, exit")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd")
    s = sub.add_parser("stack", help="start/stop the local Kafka broker and Redis server")
    s.add_argument("action", choices=["up", "down", "status"])
    s.add_argument("--cluster", action="store_true", help="up: also a local Flink cluster (down always stops it)")
    s.set_defaults(fn=_cmd_stack)
    s = sub.add_parser("cluster", help="start/stop/inspect the local standalone Flink cluster only")
    s.add_argument("action", choices=["up", "down", "status"])
    s.set_defaults(fn=_cmd_cluster)
    s = sub.add_parser("submit", help="submit the job to the Flink cluster at cluster.rest_address; prints its id")
    s.add_argument("--from-savepoint", default=None, metavar="PATH", help="resume from this savepoint/checkpoint")
    s.add_argument("--allow-non-restored-state", action="store_true", help="skip state of removed operators")
    s.add_argument("--wait", action="store_true", help="return once all tasks run")
    s.set_defaults(fn=_cmd_submit)
    s = sub.add_parser("savepoint", help="trigger a savepoint of a running job; prints its path")
    s.add_argument("job_id")
    s.add_argument("--dir", default=None, help="target directory (default job.savepoint_dir, else the cluster's)")
    s.set_defaults(fn=_cmd_savepoint)
    s = sub.add_parser("cancel", help="cancel a job, or stop it with a savepoint (--savepoint; prints its path)")
    s.add_argument("job_id")
    s.add_argument("--savepoint", action="store_true", help="stop with a savepoint, to resume with submit")
    s.add_argument("--dir", default=None, help="savepoint directory (default job.savepoint_dir, else the cluster's)")
    s.add_argument("--drain", action="store_true", help="with --savepoint: flush timers first (final stop)")
    s.set_defaults(fn=_cmd_cancel)
    s = sub.add_parser("produce", help="stream a video source's motion features to Kafka")
    s.add_argument("--camera", default=None, help="camera id (its cameras.<id> entry applies if listed)")
    s.add_argument("--source", default=None, help="file path, stream URL, or device number")
    s.add_argument("--all", action="store_true", help="every camera in cameras, one worker each")
    s.add_argument("--limit", type=int, default=None, help="stop after this many sampled frames per camera")
    s.add_argument("--realtime", action="store_true", default=None, help="pace files at their native fps")
    s.set_defaults(fn=_cmd_produce)
    s = sub.add_parser("run", help="run the Flink job (local mini-cluster unless submitted)")
    s.set_defaults(fn=_cmd_run)
    s = sub.add_parser("events", help="read anomaly events back from Kafka and Redis, or follow Kafka's (--follow)")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for events")
    s.add_argument("--expect", type=int, default=None, help="stop early once this many Kafka events arrived")
    s.add_argument("--quiet", action="store_true", help="summary only")
    add_follow_arguments(s)
    s.set_defaults(fn=_cmd_events)
    s = sub.add_parser("dead-letters", help="what the job could not score lately, per camera and reason")
    dead_letters_arguments(s)
    s.set_defaults(fn=_cmd_dead_letters)
    s = sub.add_parser("schemas", help="write the JSON Schemas of the job's output records (vad/records.py)")
    s.add_argument("--dir", default=str(REPO_ROOT / "docs" / "schemas"), help="folder (default docs/schemas)")
    s.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files there differ")
    s.set_defaults(fn=_cmd_schemas)
    add_model_commands(sub)
    s = sub.add_parser("evaluate", help="frame- and event-level accuracy on DIR/test with DIR/labels.json")
    s.add_argument("--data", required=True)
    s.add_argument("--model", default=None, help="ONNX model (default: job.model_path); its card.json beside it")
    s.add_argument("--out", default=None, help="folder for report.json, ROC and timeline PNGs")
    s.add_argument("--streaming", action="store_true", help="score through Kafka and the Flink job (stack must be up)")
    s.set_defaults(fn=_cmd_evaluate)
    s = sub.add_parser("ui", help="serve the live review page (cameras, events, heatmaps, acknowledgements)")
    s.add_argument("--port", type=int, default=None, help="port (default ui.port)")
    s.add_argument("--host", default=None, help="address to bind (default ui.host, loopback)")
    s.set_defaults(fn=_cmd_ui)
    s = sub.add_parser("demo", help="end to end on the embedded stack (what `make demo` runs)")
    s.set_defaults(fn=_cmd_demo)
    s = sub.add_parser("config", help="the effective configuration, or the defaults written out")
    s.add_argument(
        "action",
        choices=["show", "defaults"],
        help="show: every field's value, source (default, file:, env:) and meaning; "
        "defaults: every field's default with its meaning, as config/default.yaml or docs/configuration.md holds them",
    )
    s.add_argument(
        "--format",
        choices=["yaml", "table", "markdown"],
        default=None,
        help="show: table (default) or yaml; defaults: yaml (default) or markdown",
    )
    s.add_argument("--write", action="store_true", help="defaults: write config/default.yaml (docs/configuration.md)")
    s.add_argument("--check", action="store_true", help="defaults: write nothing; exit 1 if that file differs")
    s.set_defaults(fn=_cmd_config)
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
