import pytest

from vad.config import ConfigError, load_config
from vad.kafka_clients import FLINK_KAFKA_PACKAGE, flink_properties, jaas_quote, security_settings


def test_sasl_and_tls_settings_reach_both_clients_with_the_secret_from_the_environment(tmp_path):
    ca = tmp_path / "kafka-ca.pem"
    ca.write_text("pem")
    cfg = load_config(
        env={
            "VAD_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "VAD_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "VAD_KAFKA__SASL_USERNAME": "vad",
            "VAD_KAFKA__SASL_PASSWORD": "s3cret",
            "VAD_KAFKA__SSL_CAFILE": str(ca),
        }
    ).kafka
    java = flink_properties(cfg)
    assert java["security.protocol"] == "SASL_SSL" and java["sasl.mechanism"] == "SCRAM-SHA-512"
    # the connector's relocated Kafka client: the plain class name is not on the job's classpath
    assert java["sasl.jaas.config"].startswith(f"{FLINK_KAFKA_PACKAGE}.common.security.scram.ScramLoginModule ")
    assert 'password="s3cret"' in java["sasl.jaas.config"]
    assert java["ssl.truststore.type"] == "PEM" and java["ssl.truststore.location"] == str(ca)
    py = security_settings(cfg)
    assert py["sasl_plain_password"] == "s3cret" and py["ssl_cafile"] == str(ca)
    assert "s3cret" not in repr(cfg)


def test_plaintext_by_default():
    cfg = load_config(env={}).kafka
    assert flink_properties(cfg) == {"security.protocol": "PLAINTEXT"}
    assert security_settings(cfg) == {"security_protocol": "PLAINTEXT"}


def test_kafka_python_checksums_with_the_c_crc32c():
    # Without the crc32c package kafka-python falls back to a pure-Python CRC-32C that cost ~0.9 ms
    # of CPU per 10 KB record here: 10x the rest of a send (requirements.txt).
    from kafka.record import util

    assert util.crc32c_c is not None and util._crc32c is util.crc32c_c


def test_jaas_values_are_quoted_and_escaped():
    assert jaas_quote('p"a\\ss;w=rd') == '"p\\"a\\\\ss;w=rd"'
    assert jaas_quote("a\nb") == '"a\\nb"'  # a line break cannot end the quoted value


def test_a_missing_ca_file_is_named():
    cfg = load_config(env={"VAD_KAFKA__SECURITY_PROTOCOL": "SSL", "VAD_KAFKA__SSL_CAFILE": "/nonexistent/ca.pem"}).kafka
    with pytest.raises(FileNotFoundError, match=r"kafka\.ssl_cafile: no such file /nonexistent/ca\.pem"):
        security_settings(cfg)


@pytest.mark.parametrize(
    "env, field",
    [
        (
            {"VAD_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "VAD_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512"},
            "kafka.sasl_username",
        ),
        (
            {
                "VAD_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "VAD_KAFKA__SASL_MECHANISM": "PLAIN",
                "VAD_KAFKA__SASL_USERNAME": "u",
            },
            "kafka.sasl_password",
        ),
        ({"VAD_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "VAD_KAFKA__SASL_USERNAME": "u"}, "kafka.sasl_mechanism"),
        ({"VAD_KAFKA__SASL_USERNAME": "u"}, "kafka.sasl_username is set but security_protocol PLAINTEXT"),
        ({"VAD_KAFKA__SSL_CAFILE": "/ca.pem"}, "kafka.ssl_cafile is set but security_protocol PLAINTEXT"),
        ({"VAD_REDIS__USERNAME": "w"}, "redis.password is required with redis.username"),
        ({"VAD_REDIS__TLS_CAFILE": "/ca.pem"}, "redis.tls_cafile is set but redis.tls is false"),
    ],
)
def test_incomplete_security_settings_are_refused_naming_the_field(env, field):
    with pytest.raises(ConfigError, match=field):
        load_config(env=env)


def test_passwords_from_the_environment_are_never_printed():
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "VAD_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "VAD_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "VAD_KAFKA__SASL_USERNAME": "edge",
        "VAD_KAFKA__SASL_PASSWORD": "kafka-Secret-1",
        "VAD_REDIS__USERNAME": "writer",
        "VAD_REDIS__PASSWORD": "redis-Secret-2",
    }
    for args in (["--validate-config"], ["config", "show"], ["config", "show", "--format", "yaml"]):
        r = subprocess.run([sys.executable, "-m", "vadctl.cli", *args], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "edge" in r.stdout and "writer" in r.stdout
        assert "Secret" not in r.stdout + r.stderr
