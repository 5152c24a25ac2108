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


class _Bootstraps:
    """Stands in for kafka-python's KafkaConsumer: each construction is one bootstrap attempt that
    logs its failure as kafka-python does (the check reads its reasons from that log) and takes its
    whole bootstrap timeout, unless the attempt is listed as answered."""

    def __init__(self, reason: str, answered_at: int | None = None, instant: bool = False):
        self.reason, self.answered_at, self.instant, self.timeouts_ms = reason, answered_at, instant, []

    def __call__(self, bootstrap_servers, bootstrap_timeout_ms, **settings):
        import logging
        import time

        from kafka.errors import KafkaTimeoutError

        self.timeouts_ms.append(bootstrap_timeout_ms)
        if len(self.timeouts_ms) == self.answered_at:
            return self
        logging.getLogger("kafka.net.manager").warning(
            "Bootstrap connection to %s failed: %s (backoff 50 ms)", bootstrap_servers, self.reason
        )
        if not self.instant:
            time.sleep(bootstrap_timeout_ms / 1000)
        raise KafkaTimeoutError()

    def topics(self):
        return set()

    def close(self):
        pass


def test_a_refused_login_ends_the_check_after_its_first_attempt(sasl, monkeypatch):
    from vad.access_check import AccessError, check_kafka

    fake = _Bootstraps("[Error 58] SaslAuthenticationFailedError: Authentication failed")
    monkeypatch.setattr("kafka.KafkaConsumer", fake)
    with pytest.raises(AccessError) as e:
        check_kafka(sasl, timeout_s=30, attempt_s=0.05)
    assert fake.timeouts_ms == [50]
    assert "refused the SCRAM-SHA-512 login of user 'edge'" in str(e.value) and e.value.definitive


def test_a_slow_broker_gets_longer_attempts_until_the_deadline(sasl, monkeypatch):
    from vad.access_check import AccessError, check_kafka

    fake = _Bootstraps("[Error 7] RequestTimedOutError: Request timed out after 50 ms")
    monkeypatch.setattr("kafka.KafkaConsumer", fake)
    with pytest.raises(AccessError) as e:
        check_kafka(sasl, timeout_s=0.6, attempt_s=0.05)
    assert fake.timeouts_ms[:3] == [50, 100, 200] and 3 <= len(fake.timeouts_ms) <= 5
    assert sum(fake.timeouts_ms) <= 600
    assert "RequestTimedOutError" in str(e.value)
    answered = _Bootstraps("[Error 7] RequestTimedOutError: Request timed out after 50 ms", answered_at=2)
    monkeypatch.setattr("kafka.KafkaConsumer", answered)
    check_kafka(sasl, timeout_s=5, attempt_s=0.05)
    assert answered.timeouts_ms == [50, 100]


def test_attempts_that_fail_at_once_do_not_spin(sasl, monkeypatch):
    """A client giving up before its bootstrap timeout still has its attempt take that long; an error
    that is not Kafka's (a setting the client refuses) ends the check at once."""
    from vad.access_check import AccessError, check_kafka

    fake = _Bootstraps("KafkaConnectionError: socket disconnected", instant=True)
    monkeypatch.setattr("kafka.KafkaConsumer", fake)
    with pytest.raises(AccessError):
        check_kafka(sasl, timeout_s=0.6, attempt_s=0.05)
    assert 3 <= len(fake.timeouts_ms) <= 5

    def refuses(**settings):
        raise TypeError("unexpected keyword argument")

    monkeypatch.setattr("kafka.KafkaConsumer", refuses)
    with pytest.raises(AccessError) as e:
        check_kafka(sasl, timeout_s=30, attempt_s=5)
    assert isinstance(e.value.__cause__, TypeError)
