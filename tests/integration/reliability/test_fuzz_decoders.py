"""Scenario: every decoder, Python and Java, fuzzed with random bytes and mutations of valid
records (the properties are in tests/unit/vad/*_fuzz.py, tests/unit/udfs/test_batches_fuzz.py and
java/.../WireFuzzTest.java; docs/reliability.md). ``VAD_FUZZ_EXAMPLES`` (default 20,000) sets the
Python total; inputs are counted only when their run passed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PYTHON_FUZZ = [
    "tests/unit/vad/test_schema_fuzz.py",
    "tests/unit/vad/test_batch_decode_fuzz.py",
    "tests/unit/vad/test_records_fuzz.py",
    "tests/unit/udfs/test_batches_fuzz.py",
]
JAVA_FUZZ = REPO / "java/src/test/java/io/github/vad/flink/WireFuzzTest.java"


def _python_total(examples: str) -> int:
    code = "import fuzzing; print(fuzzing.fuzzed_inputs())"
    env = {**os.environ, "VAD_FUZZ_EXAMPLES": examples, "PYTHONPATH": str(REPO / "tests")}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def test_python_decoders_fuzzed(fault_report):
    examples = os.environ.get("VAD_FUZZ_EXAMPLES", "20000")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PYTHON_FUZZ],
        env={**os.environ, "VAD_FUZZ_EXAMPLES": examples},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    total = _python_total(examples)
    assert total >= 10_000
    fault_report.fuzzed(total)


def test_java_decoders_fuzzed(fault_report):
    run = subprocess.run(
        ["mvn", "-q", "-B", "-f", "java/pom.xml", "test", "-Dtest=WireFuzzTest"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    source = JAVA_FUZZ.read_text()
    tries = int(re.search(r"static final int TRIES = (\d+);", source).group(1))
    properties = int(re.search(r"static final int PROPERTIES = (\d+);", source).group(1))
    fault_report.fuzzed(tries * properties)
