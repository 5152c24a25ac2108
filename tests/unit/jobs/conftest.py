import os

import pytest


@pytest.fixture(autouse=True)
def _restore_environment():
    # These tests run PyFlink in this process, whose Python worker sets PYFLINK_GATEWAY_DISABLED in
    # os.environ; a job started afterwards as a subprocess (the integration tests) inherited it and
    # refused to start its gateway when both folders ran in one pytest session in this order.
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
