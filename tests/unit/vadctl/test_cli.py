"""`vad schemas`: writes the published JSON Schemas of the job's output records, and checks them."""

from __future__ import annotations

import sys
import types

from vad.config import REPO_ROOT
from vad.records import PUBLISHED
from vadctl.cli import FIRST_FAILURE_LINE, main


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


def _failed_run_stderr(monkeypatch, capsys, error: str, log_dir) -> list[str]:
    """`vad run`'s stderr lines when its job fails with `error` (checks passed, log in `log_dir`)."""

    def failing_run(cfg):
        raise RuntimeError(error)

    monkeypatch.setitem(sys.modules, "jobs.anomaly_job", types.SimpleNamespace(run=failing_run))
    monkeypatch.setattr("jobs.model_check.check_model", lambda cfg: None)
    monkeypatch.setattr("vadctl.cli._access_ok", lambda cmd, cfg: True)
    monkeypatch.setenv("FLINK_LOG_DIR", str(log_dir))
    assert main(["run"]) == 1
    return capsys.readouterr().err.strip().splitlines()


def test_a_failed_run_names_the_job_log_before_its_last_cause(tmp_path, capsys, monkeypatch):
    """The error line is the final failure only, so the line before it says where the earlier ones are."""

    last_two = _failed_run_stderr(
        monkeypatch,
        capsys,
        "Job execution failed.\nCaused by: java.lang.IllegalStateException: no slot",
        tmp_path / "log",
    )[-2:]
    assert last_two == [
        f"vad run: every failure and restart of the job is in its log: {tmp_path / 'log'}",
        "vad run: error: the job failed: java.lang.IllegalStateException: no slot",
    ]


def test_a_failed_run_names_the_failure_that_started_its_restarts(tmp_path, capsys, monkeypatch):
    """After restarts the final error can be a follow-on failure (no slot for the restart); the
    first one, from the job's log, is printed before it."""
    log = tmp_path / "log"
    log.mkdir()
    (log / "flink-root-python-host.log").write_text(
        "2026-12-06 22:34:30,486 WARN  org.apache.flink.runtime.taskmanager.Task [] - score-detect (1/1)#0 "
        "switched from INITIALIZING to FAILED with failure cause:\n"
        "org.apache.kafka.common.errors.TopicAuthorizationException: Not authorized to access topics: [vad.events]\n"
        "\tat org.apache.kafka.clients.Metadata.maybeThrow(Metadata.java:1)\n"
        "2026-12-06 22:34:31,000 INFO  org.apache.flink.runtime.jobmaster.JobMaster [] - restarting\n"
    )

    last_two = _failed_run_stderr(
        monkeypatch, capsys, "Job execution failed.\nCaused by: NoResourceAvailableException: no slot", log
    )[-2:]
    assert last_two == [
        f"{FIRST_FAILURE_LINE}org.apache.kafka.common.errors.TopicAuthorizationException: Not authorized to "
        "access topics: [vad.events]",
        "vad run: error: the job failed: NoResourceAvailableException: no slot",
    ]
