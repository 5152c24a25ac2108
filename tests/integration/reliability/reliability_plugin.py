"""The pytest plugin of `make reliability` (``-p reliability_plugin``): each test is a scenario; a
scenario that compares events with a reference run reports them through the ``fault_report``
fixture. At the end the results go to ``bench/results/reliability-<UTC time>.json`` and
``reliability-latest.json``, which ``report.py`` turns into the one JSON line `make reliability`
ends with."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

RESULTS_DIR = Path(__file__).resolve().parents[3] / "bench" / "results"
LATEST = RESULTS_DIR / "reliability-latest.json"
_SCENARIOS: dict[str, dict] = {}


class FaultReport:
    """What one scenario measured: the comparison with its reference (per sink), fuzzed inputs,
    anything else worth reading in the results (``note``)."""

    def __init__(self, entry: dict):
        self.entry = entry

    def compared(self, sink: str, comparison) -> None:
        self.entry.setdefault("compared", {})[sink] = {
            "lost": comparison.lost,
            "duplicated": comparison.duplicated,
            "unexpected": comparison.unexpected,
            "examples": comparison.examples,
        }

    def fuzzed(self, inputs: int) -> None:
        self.entry["fuzzed_inputs"] = self.entry.get("fuzzed_inputs", 0) + inputs

    def note(self, **values) -> None:
        self.entry.setdefault("notes", {}).update(values)


def _entry(nodeid: str) -> dict:
    return _SCENARIOS.setdefault(nodeid, {"scenario": nodeid, "passed": False})


@pytest.fixture
def fault_report(request) -> FaultReport:
    return FaultReport(_entry(request.node.nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    entry = _entry(item.nodeid)
    if rep.when == "call":
        entry["passed"] = rep.passed
        entry["seconds"] = round(rep.duration, 1)
    elif rep.failed:  # set-up or teardown failed: the scenario did not pass
        entry["passed"] = False
        entry.setdefault("error", rep.when)


def pytest_sessionfinish(session, exitstatus):
    if not _SCENARIOS:
        return
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    doc = {"finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "scenarios": list(_SCENARIOS.values())}
    text = json.dumps(doc, indent=2) + "\n"
    (RESULTS_DIR / f"reliability-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json").write_text(text)
    LATEST.write_text(text)
