"""Prints the summary line `make reliability` ends with, from the plugin's latest results: one JSON
object with ``scenarios``, ``passed``, ``events_lost``, ``events_duplicated``, ``events_unexpected``
(events the reference lacks, a changed one included), ``fuzzed_inputs`` and each scenario's result."""

from __future__ import annotations

import json
import sys

from reliability_plugin import LATEST


def summary(doc: dict) -> dict:
    scenarios = doc["scenarios"]
    compared = [c for s in scenarios for c in s.get("compared", {}).values()]
    return {
        "scenarios": len(scenarios),
        "passed": sum(bool(s["passed"]) for s in scenarios),
        "events_lost": sum(c["lost"] for c in compared),
        "events_duplicated": sum(c["duplicated"] for c in compared),
        "events_unexpected": sum(c["unexpected"] for c in compared),
        "fuzzed_inputs": sum(s.get("fuzzed_inputs", 0) for s in scenarios),
        "results": {s["scenario"]: {k: v for k, v in s.items() if k != "scenario"} for s in scenarios},
    }


def main() -> int:
    if not LATEST.is_file():
        print(json.dumps({"error": f"no results in {LATEST}"}))
        return 1
    print(json.dumps(summary(json.loads(LATEST.read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
