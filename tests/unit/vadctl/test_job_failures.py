import os

from vadctl.job_failures import first_failure, root_cause


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


def test_root_cause_skips_the_causes_of_suppressed_exceptions():
    trace = (
        "org.apache.kafka.common.errors.TransactionalIdAuthorizationException: Transactional Id authorization failed.\n"
        "\tSuppressed: java.lang.NullPointerException: currentProducer is null\n"
        "\t\tat org.apache.flink.connector.kafka.sink.ExactlyOnceKafkaWriter.close(ExactlyOnceKafkaWriter.java:272)\n"
        "\tCaused by: java.lang.IllegalStateException: closed twice\n"
    )
    assert root_cause(trace).startswith("org.apache.kafka.common.errors.TransactionalIdAuthorizationException")


def test_root_cause_of_a_python_worker_failure_is_its_python_exception():
    trace = (
        "java.lang.RuntimeException: Error while waiting for BeamPythonFunctionRunner flush\n"
        "Caused by: java.lang.RuntimeException: Error received from SDK harness for instruction 1: "
        "Traceback (most recent call last):\n"
        '  File "/x/operations.py", line 197, in wrapped_func\n'
        "    yield from _emit_results(timestamp, watermark, results, has_side_output)\n"
        "ValueError: boom 1\n"
        "\n"
        "\tat org.apache.beam.sdk.util.MoreFutures.get(MoreFutures.java:61)\n"
    )
    assert (
        root_cause(trace)
        == "java.lang.RuntimeException: Error received from SDK harness for instruction 1: ValueError: boom 1"
    )


def _log(path, *failures: str) -> None:
    lines = ["2026-12-06 22:34:28,598 INFO  org.apache.flink.runtime.jobmaster.JobMaster [] - starting"]
    for i, cause in enumerate(failures):
        lines += [
            f"2026-12-06 22:34:3{i},486 WARN  org.apache.flink.runtime.taskmanager.Task [] - sink (1/1)#{i} "
            "switched from RUNNING to FAILED with failure cause:",
            "java.io.IOException: the sink failed",
            "\tat a.b.C.d(C.java:1)",
            f"Caused by: {cause}",
            "\t... 3 more",
            f"2026-12-06 22:34:3{i},600 INFO  org.apache.flink.runtime.jobmaster.JobMaster [] - restarting",
        ]
    path.write_text("\n".join(lines) + "\n")


def test_first_failure_is_the_first_task_failure_in_the_newest_log(tmp_path):
    stale = tmp_path / "flink-root-python-oldhost.log"
    _log(stale, "org.example.Stale: an earlier run's")
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    _log(tmp_path / "flink-root-python-host.log", "org.example.Refused: no ACL", "org.example.NoSlot: none")
    assert first_failure(tmp_path) == "org.example.Refused: no ACL"


def test_first_failure_is_none_without_a_task_failure(tmp_path):
    assert first_failure(tmp_path) is None  # no log at all
    _log(tmp_path / "flink-root-python-host.log")
    (tmp_path / "other.log").write_text("switched from RUNNING to FAILED with failure cause:\nx.Y: not a job log\n")
    assert first_failure(tmp_path) is None
