"""`vad schemas`: writes the published JSON Schemas of the job's output records, and checks them."""

from __future__ import annotations

import sys
import types

from vad.config import REPO_ROOT
from vad.records import PUBLISHED
from vadctl.cli import main, root_cause


def test_schemas_are_written_and_checked(tmp_path, capsys):
    assert main(["schemas", "--check"]) == 0  # the committed files, in docs/schemas
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 1
    assert "differs from vad/records.py" in capsys.readouterr().err
    assert main(["schemas", "--dir", str(tmp_path)]) == 0
    for name in PUBLISHED:
        assert (tmp_path / name).read_text() == (REPO_ROOT / "docs" / "schemas" / name).read_text()
    assert main(["schemas", "--check", "--dir", str(tmp_path)]) == 0


def test_run_and_submit_refuse_a_missing_model_in_one_line(tmp_path, capsys, monkeypatch):
    """Before anything starts: no JVM, no cluster contacted, not even PyFlink imported by `run`."""
    monkeypatch.setenv("VAD_JOB__MODEL_PATH", str(tmp_path / "gone.onnx"))
    monkeypatch.setenv("VAD_CLUSTER__REST_ADDRESS", "127.0.0.1:9")  # nothing answers there
    for cmd in ("run", "submit"):
        assert main([cmd]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"job.model_path: {tmp_path / 'gone.onnx'}: no such file"], (cmd, err)


def test_root_cause_is_the_innermost_caused_by_line():
    trace = (
        "An error occurred while calling o0.execute.\n"
        ": org.apache.flink.runtime.client.JobExecutionException: Job execution failed.\n"
        "\tat org.apache.flink.runtime.jobmaster.JobResult.toJobExecutionResult(JobResult.java:144)\n"
        "Caused by: org.apache.flink.runtime.execution.SuppressRestartsException: Unrecoverable failure.\n"
        "\tat io.github.vad.flink.BatchRecords.initializeState(BatchRecords.java:79)\n"
        "Caused by: java.lang.IllegalStateException: job.score_shards: restore with 1\n"
        "\t... 12 more\n"
    )
    assert root_cause(trace) == "java.lang.IllegalStateException: job.score_shards: restore with 1"
    assert root_cause("Py4JError: no cause\n  at x") == "Py4JError: no cause"
    assert root_cause("") == "unknown"


def test_a_failed_run_names_the_job_log_before_its_last_cause(tmp_path, capsys, monkeypatch):
    """The error line is the final failure only, so the line before it says where the earlier ones are."""

    def failing_run(cfg):
        raise RuntimeError("Job execution failed.\nCaused by: java.lang.IllegalStateException: no slot")

    monkeypatch.setitem(sys.modules, "jobs.anomaly_job", types.SimpleNamespace(run=failing_run))
    monkeypatch.setattr("jobs.model_check.check_model", lambda cfg: None)
    monkeypatch.setattr("vadctl.cli._access_ok", lambda cmd, cfg: True)
    monkeypatch.setenv("FLINK_LOG_DIR", str(tmp_path / "log"))
    assert main(["run"]) == 1
    last_two = capsys.readouterr().err.strip().splitlines()[-2:]
    assert last_two == [
        f"vad run: every failure and restart of the job is in its log: {tmp_path / 'log'}",
        "vad run: error: the job failed: java.lang.IllegalStateException: no slot",
    ]
