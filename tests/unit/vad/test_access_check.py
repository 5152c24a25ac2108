"""The one-line reasons `vad produce` / `vad run` give for a refused Kafka or Redis connection, from
what the clients report (the real refusals are in tests/integration/test_security.py)."""

from __future__ import annotations

import pytest
import redis
from loopback import free_port

from vad.access_check import kafka_problem, redis_problem
from vad.config import load_config


@pytest.fixture
def sasl(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    env = {
        "VAD_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "VAD_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "VAD_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "VAD_KAFKA__SASL_USERNAME": "edge",
        "VAD_KAFKA__SASL_PASSWORD": "pw",
        "VAD_KAFKA__SSL_CAFILE": str(ca),
    }
    return load_config(env=env).kafka


def test_a_refused_login_is_named_even_among_dropped_connections(sasl):
    reasons = [
        "KafkaConnectionError: socket disconnected",
        "[Error 58] SaslAuthenticationFailedError: Authentication failed ... invalid credentials",
        "KafkaConnectionError: socket disconnected",
    ]
    msg = kafka_problem(sasl, reasons, 10)
    assert "refused the SCRAM-SHA-512 login of user 'edge'" in msg
    assert "kafka.sasl_password" in msg and "\n" not in msg


def test_a_last_attempt_cut_short_by_the_deadline_does_not_hide_the_dropped_logins(sasl):
    """Each attempt's request gets what is left of the bootstrap timeout, so the last one can time
    out after a few ms (seen under load: 'refused the connection (... timed out after 9 ms)')."""
    reasons = ["KafkaConnectionError: socket disconnected"] * 7 + [
        "[Error 7] RequestTimedOutError: Request timed out after 9 ms"
    ]
    msg = kafka_problem(sasl, reasons, 15)
    assert "closed the connection at the SCRAM-SHA-512 login of user 'edge'" in msg
    assert "kafka.sasl_password" in msg
    only = kafka_problem(sasl, ["[Error 7] RequestTimedOutError: Request timed out after 15000 ms"], 15)
    assert "refused the connection ([Error 7] RequestTimedOutError" in only  # nothing better to say


def test_an_untrusted_certificate_points_at_the_ca_setting(sasl):
    reason = (
        "KafkaConnectionError: Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
        "self-signed certificate in certificate chain (_ssl.c:1006)"
    )
    msg = kafka_problem(sasl, [reason], 10)
    assert "self-signed certificate in certificate chain" in msg and "kafka.ssl_cafile" in msg


def test_nothing_listening_and_no_answer(sasl):
    assert kafka_problem(sasl, ["KafkaConnectionError: [Errno 111] Connection refused"], 10).startswith(
        "nothing listens at 127.0.0.1:"
    )
    assert "did not answer within 10 s" in kafka_problem(sasl, [], 10)


def test_redis_login_tls_and_password_problems():
    cfg = load_config(env={"VAD_REDIS__USERNAME": "writer", "VAD_REDIS__PASSWORD": "pw"}).redis
    wrong = redis.AuthenticationError("invalid username-password pair or user is disabled.")
    assert "refused the login of user 'writer': wrong redis.username or redis.password" in redis_problem(cfg, wrong)
    noauth = redis.AuthenticationError("Authentication required.")
    assert "requires a password" in redis_problem(cfg, noauth)
    untrusted = redis.ConnectionError("Error 1 connecting: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert "redis.tls_cafile" in redis_problem(cfg, untrusted)
