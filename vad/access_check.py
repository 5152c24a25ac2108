"""Start-up checks of the Kafka and Redis connections: `vad produce` and `vad run` log in once before
they start, so a plaintext client at a TLS listener, an untrusted certificate or a wrong password
ends the command with one line naming the problem and the config field to look at, instead of a
client retrying (and logging) until a timeout that does not say why."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from contextlib import contextmanager

from vad.config import KafkaConfig, RedisConfig


class AccessError(RuntimeError):
    """A refused connection. ``definitive``: a login or TLS problem that retrying cannot mend (not
    just a server that does not answer yet)."""

    def __init__(self, message: str, definitive: bool = True):
        super().__init__(message)
        self.definitive = definitive


class _Reasons(logging.Handler):
    """Keeps the reasons kafka-python gives for its failed bootstrap attempts (it logs them and
    then raises only a timeout)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("Bootstrap connection to") and "failed:" in msg:
            self.reasons.append(msg.split("failed:", 1)[1].rsplit("(backoff", 1)[0].strip())


def _speaks_tls(host: str, port: int, timeout_s: float) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, ctx.wrap_socket(raw):
            return True
    except OSError:
        return False


def _first_server(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host.strip("[]"), int(port)


def kafka_problem(cfg: KafkaConfig, reasons: list[str], timeout_s: float) -> str:
    """One line: what kept the client out, and which setting to look at. `reasons`: the failed
    attempts' errors, the telling one first (after a failed login the broker may drop the next
    connections unanswered, so the last is not always the cause)."""
    at = f"Kafka at {cfg.bootstrap_servers}"
    if not reasons:
        return f"{at} did not answer within {timeout_s:g} s (kafka.bootstrap_servers)"
    telling = ("SaslAuthenticationFailed", "UnsupportedSaslMechanism", "CERTIFICATE_VERIFY_FAILED")
    # The last attempt's request is given what is left of the timeout, so a timeout there can be the
    # deadline cutting it short, not a cause: the last other reason tells more.
    answered = [r for r in reasons if "RequestTimedOut" not in r] or reasons
    reason = next((r for key in telling for r in reasons if key in r), answered[-1])
    if "SaslAuthenticationFailed" in reason:
        return (
            f"{at} refused the {cfg.sasl_mechanism} login of user {cfg.sasl_username!r}: "
            "wrong kafka.sasl_username or kafka.sasl_password"
        )
    if "UnsupportedSaslMechanism" in reason:
        return f"{at} does not accept SASL mechanism {cfg.sasl_mechanism} (kafka.sasl_mechanism): {reason}"
    if "CERTIFICATE_VERIFY_FAILED" in reason:
        detail = reason.split("certificate verify failed:", 1)[-1].split("(_ssl")[0].strip()
        return (
            f"TLS to {at}: the broker's certificate is not trusted ({detail}); set kafka.ssl_cafile to the "
            "CA that signed it"
        )
    if "Connection refused" in reason or "ECONNREFUSED" in reason:
        return f"nothing listens at {cfg.bootstrap_servers} (kafka.bootstrap_servers)"
    if not cfg.security_protocol.endswith("SSL") and _speaks_tls(*_first_server(cfg.bootstrap_servers), timeout_s):
        return (
            f"{at} speaks TLS, and kafka.security_protocol is {cfg.security_protocol}: set it to SSL or SASL_SSL "
            "(and kafka.ssl_cafile)"
        )
    if "WRONG_VERSION_NUMBER" in reason or "record layer failure" in reason:
        return f"{at} does not speak TLS, and kafka.security_protocol is {cfg.security_protocol}"
    if cfg.security_protocol.startswith("SASL_") and "disconnected" in reason:
        # kafka-python does not always read the broker's answer to a failed login before the broker
        # closes the connection.
        return (
            f"{at} closed the connection at the {cfg.sasl_mechanism} login of user {cfg.sasl_username!r}: "
            "wrong kafka.sasl_username or kafka.sasl_password, or a listener without SASL"
        )
    return f"{at} refused the connection ({reason}); check kafka.security_protocol and the SASL settings"


@contextmanager
def bootstrap_reasons():
    """While kafka-python bootstraps inside the block: its per-attempt failures are collected into
    the yielded list and not logged (the caller reports them once, as one line)."""
    reasons = _Reasons()
    manager = logging.getLogger("kafka.net.manager")
    top = logging.getLogger("kafka")
    saved = (top.level, manager.level, manager.propagate)
    top.setLevel(logging.CRITICAL)
    manager.setLevel(logging.WARNING)
    manager.propagate = False
    manager.addHandler(reasons)
    try:
        yield reasons.reasons
    finally:
        manager.removeHandler(reasons)
        top.setLevel(saved[0])
        manager.setLevel(saved[1])
        manager.propagate = saved[2]


# Reasons no retry can mend: a check that sees one reports it at once rather than at the deadline.
_SETTLED = ("SaslAuthenticationFailed", "UnsupportedSaslMechanism", "CERTIFICATE_VERIFY_FAILED", "WRONG_VERSION_NUMBER")


def _settled(cfg: KafkaConfig, reasons: list[str], timeout_s: float) -> bool:
    """Whether the failed attempts so far already say what a retry would: a refused login, an
    untrusted certificate, or TLS spoken on one side only."""
    if any(key in r for key in _SETTLED for r in reasons):
        return True
    # A plaintext client at a TLS listener is only ever disconnected: ask the listener itself.
    return (
        bool(reasons)
        and not cfg.security_protocol.endswith("SSL")
        and _speaks_tls(*_first_server(cfg.bootstrap_servers), timeout_s)
    )


def check_kafka(cfg: KafkaConfig, timeout_s: float = 15.0, attempt_s: float = 2.0) -> None:
    """Bootstrap with the configured security; AccessError with one line if that fails
    (``definitive`` unless the broker just did not answer). Tried in attempts of ``attempt_s``, each
    twice as long as the last, until ``timeout_s``: a wrong password or certificate is reported after
    the first, while a broker slow to answer (loaded, or still starting) gets the whole timeout."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from vad.kafka_clients import security_settings

    settings = security_settings(cfg)  # a missing CA file is named here
    deadline = time.monotonic() + timeout_s
    with bootstrap_reasons() as reasons:
        while True:
            started, slot = time.monotonic(), min(attempt_s, deadline - time.monotonic())
            try:
                client = KafkaConsumer(
                    bootstrap_servers=cfg.bootstrap_servers, bootstrap_timeout_ms=max(int(slot * 1000), 1), **settings
                )
                client.topics()
                client.close()
                return
            except KafkaError as e:
                left = deadline - time.monotonic()
                if left <= 0.1 or _settled(cfg, reasons, min(left, attempt_s)):
                    raise _refused(cfg, reasons, timeout_s) from e
                # An attempt that gave up before its time still takes it: no retrying in a busy loop.
                time.sleep(max(0.0, min(started + slot - time.monotonic(), left)))
                attempt_s *= 2
            except Exception as e:  # not the broker's answer: a setting the client itself refused
                raise _refused(cfg, reasons, timeout_s) from e


def _refused(cfg: KafkaConfig, reasons: list[str], timeout_s: float) -> AccessError:
    msg = kafka_problem(cfg, reasons, timeout_s)
    unanswered = not reasons or msg.startswith("nothing listens")
    return AccessError(msg, definitive=not unanswered)


def redis_problem(cfg: RedisConfig, error: Exception) -> str:
    import redis

    at = f"Redis at {cfg.host}:{cfg.port}"
    text = str(error)
    if "NOAUTH" in text or "Authentication required" in text:
        return f"{at} requires a password: set redis.password (and redis.username for an ACL user)"
    if isinstance(error, redis.AuthenticationError) or "WRONGPASS" in text or "invalid username-password" in text:
        who = f"user {cfg.username!r}" if cfg.username else "the default user"
        return f"{at} refused the login of {who}: wrong redis.username or redis.password"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS to {at}: the server's certificate is not trusted; set redis.tls_cafile to the CA that signed it"
    if not cfg.tls and _speaks_tls(cfg.host, cfg.port, cfg.timeout_s):
        return f"{at} speaks TLS, and redis.tls is false: set redis.tls (and redis.tls_cafile)"
    if "Connection refused" in text:
        return f"nothing listens at {cfg.host}:{cfg.port} (redis.host, redis.port)"
    return f"{at}: {text} (check redis.tls, redis.username, redis.password)"


def check_redis(cfg: RedisConfig) -> None:
    """Log in and PING once; AccessError with one line if that fails."""
    import redis

    from vad.redis_store import connect

    client = connect(cfg)
    try:
        client.ping()
    except (redis.RedisError, OSError) as e:
        msg = redis_problem(cfg, e)
        # Only a login or TLS problem stops the start: Redis being away holds the job's writes back,
        # never the job (redis_sink).
        definitive = any(k in msg for k in ("refused the login", "requires a password", "not trusted", "speaks TLS"))
        raise AccessError(msg, definitive=definitive) from e
    finally:
        client.close()
