"""`make bench`: every benchmark in one run; the last stdout line is one JSON object with all keys,
also saved under bench/results/. Figures from one run are comparable as ratios; absolute figures
depend on how busy the machine is (the load average is recorded)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    out: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cores": os.cpu_count()}
    from bench import common, edge, job, models

    # The edge benchmark sends its records to the bench's broker, so `produce` is real Kafka work
    # (acks=all, lz4); job.run() reuses the running stack and stops it at the end.
    try:
        cfg = common.stack_up()
        out.update(edge.run(bootstrap=cfg.kafka.bootstrap_servers))
    except BaseException:
        common.stack_down()
        raise
    out.update(job.run(quick=quick))
    out.update(models.run(quick=quick))
    out["loadavg_end"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"saved {path}", file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
