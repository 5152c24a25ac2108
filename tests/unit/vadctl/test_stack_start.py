"""The embedded stack's start-up wait: a server that dies while starting is reported with how it
ended (its log may be empty: the broker logs through log4j)."""

from __future__ import annotations

import subprocess
import time

import pytest

from vadctl.stack import Service, StackError, _spawn, _wait


@pytest.mark.parametrize(
    ("script", "said"), [("exit 3", "exited with code 3"), ("kill -9 $$", "was killed by signal 9")]
)
def test_a_server_that_dies_during_start_is_reported_with_its_exit(tmp_path, script, said):
    svc = Service("kafka", 1, tmp_path)
    _spawn(svc, ["sh", "-c", script])
    time.sleep(0.5)
    # Another process started meanwhile (any thread may) must not collect the exit status first.
    subprocess.run(["true"], check=True)
    with pytest.raises(StackError, match=rf"^kafka {said} during start; log {svc.log_file}"):
        _wait(svc, time.monotonic() + 10, lambda: False)
