"""The embedded stack for one machine: a single-node KRaft Kafka broker and a Redis server.

Both run as background processes with pid files and logs in one state folder. ``up`` is idempotent
(a running, answering process is left alone); ``down`` stops only processes whose pid file is ours and
whose command line names our state folder, so it never kills someone else's broker.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from vad.config import REPO_ROOT, Config, state_dir
from vadctl import stack_secure

log = logging.getLogger(__name__)

KAFKA_JARS = REPO_ROOT / ".cache" / "jars" / "kafka"

_SERVER_PROPERTIES = """\
# Written by `vad stack up`: one process is both KRaft controller and broker, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{kafka_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={data_dir}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
# Flink's exactly-once sink needs transaction.timeout.ms <= this broker maximum (15 min default).
transaction.max.timeout.ms=900000
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=24
"""

_LOG4J2 = """\
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


class StackError(RuntimeError):
    pass


# The servers this process started, kept so that how one ended can still be read: a dropped Popen
# reaps its child when collected, after which the exit status is gone.
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    state: Path

    @property
    def pid_file(self) -> Path:
        return self.state / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            return None
        # A recycled pid running something else is not ours: ours run inside the state folder
        # (Redis rewrites its process title, so the command line cannot tell).
        return pid if Path(cwd).is_relative_to(self.state) else None

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False


def services(cfg: Config) -> tuple[Service, Service]:
    st = state_dir(cfg)
    return Service("kafka", cfg.stack.kafka_port, st), Service("redis", cfg.stack.redis_port, st)


def _spawn(svc: Service, argv: list[str]) -> int:
    svc.state.mkdir(parents=True, exist_ok=True)
    with open(svc.log_file, "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=svc.state,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    svc.pid_file.write_text(str(proc.pid))
    return proc.pid


def _start_kafka(cfg: Config, svc: Service) -> None:
    if not any(KAFKA_JARS.glob("kafka_2.13-*.jar")):
        raise StackError(f"no Kafka broker jars in {KAFKA_JARS}: run `make setup` (Maven fetches them)")
    java = shutil.which("java")
    if java is None:
        raise StackError("java not found on PATH (OpenJDK 17 is required for the broker)")
    kdir = svc.state / "kafka"
    data = kdir / "data"
    kdir.mkdir(parents=True, exist_ok=True)
    props = kdir / "server.properties"
    text = _SERVER_PROPERTIES.format(
        kafka_port=cfg.stack.kafka_port,
        controller_port=cfg.stack.controller_port,
        data_dir=data,
        partitions=cfg.kafka.topics.partitions,
    )
    format_extra: list[str] = []
    if cfg.stack.secure:
        tls = stack_secure.ensure_tls(svc.state)
        plain = (
            "listeners=",
            "advertised.listeners=",
            "inter.broker.listener.name=",
            "listener.security.protocol.map=",
        )
        text = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(plain))
        text += stack_secure.kafka_listener_properties(cfg, tls)
        format_extra = stack_secure.kafka_format_arguments(cfg)
    props.touch(mode=0o600)  # it holds the super user's password when secure
    props.write_text(text)
    (kdir / "log4j2.properties").write_text(_LOG4J2.format(log_file=kdir / "server.log"))
    cp = f"{KAFKA_JARS}/*"
    # The broker's temporary files (the LZ4 native library it unpacks for every start) go with its
    # state, not into /tmp, where a broker that is killed leaves them.
    tmp = kdir / "tmp"
    tmp.mkdir(exist_ok=True)
    if not (data / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # --cluster-id=: an id may start with "-", which a separate argument would parse as an option.
        fmt = [java, "-cp", cp, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(props)]
        fmt += format_extra
        res = subprocess.run(fmt, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise StackError(f"formatting the KRaft log dir failed:\n{res.stdout}{res.stderr}")
    _spawn(
        svc,
        [
            java,
            f"-Xmx{cfg.stack.kafka_heap_mb}m",
            f"-Xms{min(256, cfg.stack.kafka_heap_mb)}m",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}",
            f"-Dvad.state={svc.state}",
            f"-Djava.io.tmpdir={tmp}",
            "-cp",
            cp,
            "kafka.Kafka",
            str(props),
        ],
    )


def _start_redis(cfg: Config, svc: Service) -> None:
    exe = shutil.which("redis-server")
    if exe is None:
        raise StackError("redis-server not found: run `make setup` (installs Debian's redis-server)")
    rdir = svc.state / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    argv = [exe, "--bind", "127.0.0.1", "--port", str(cfg.stack.redis_port), "--dir", str(rdir)]
    argv += ["--save", "", "--appendonly", "yes", "--appendfsync", cfg.stack.redis_appendfsync]
    argv += ["--daemonize", "no", "--protected-mode", "yes"]
    if cfg.stack.secure:
        # Later options win: --port 0 closes the plaintext port opened above.
        argv += stack_secure.redis_arguments(cfg, stack_secure.ensure_tls(svc.state))
    _spawn(svc, argv)


def _wait(svc: Service, deadline: float, ready) -> None:
    while time.monotonic() < deadline:
        if svc.pid() is None:
            tail = svc.log_file.read_text(errors="replace")[-2000:] if svc.log_file.exists() else ""
            raise StackError(f"{svc.name} {_exit_status(svc)} during start; log {svc.log_file}:\n{tail}")
        try:
            if ready():
                return
        except Exception as e:  # not ready yet, whatever the client says
            log.debug("%s not ready: %s", svc.name, e)
        time.sleep(0.5)
    raise StackError(f"{svc.name} did not answer on 127.0.0.1:{svc.port} in time; log {svc.log_file}")


def _exit_status(svc: Service) -> str:
    """How the process this one started for ``svc`` ended."""
    try:
        proc = _CHILDREN.get(int(svc.pid_file.read_text().strip()))
    except (OSError, ValueError):
        proc = None
    if proc is None:
        return "exited"
    code = proc.poll()
    if code is None:
        return "is no longer found"
    _CHILDREN.pop(proc.pid, None)
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


def _redis_ready(cfg: Config) -> bool:
    import redis

    if not Service("redis", cfg.stack.redis_port, state_dir(cfg)).answers():
        return False
    if cfg.stack.secure:
        from vad.redis_store import connect

        client = connect(cfg.redis.model_copy(update={"host": "127.0.0.1", "port": cfg.stack.redis_port}))
        try:
            return bool(client.ping())
        finally:
            client.close()
    return bool(redis.Redis(host="127.0.0.1", port=cfg.stack.redis_port, socket_timeout=1).ping())


def _kafka_ready(cfg: Config) -> bool:
    from vad.kafka_clients import ensure_topics

    # Only ask the client once the port is open, so it does not log a storm of refused connections.
    if not Service("kafka", cfg.stack.kafka_port, state_dir(cfg)).answers():
        return False
    local = cfg.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{cfg.stack.kafka_port}"})
    created = ensure_topics(local, timeout_s=10)
    if created:
        log.info("created topics %s", created)
    return True


def up(cfg: Config) -> dict[str, str]:
    kafka, redis_svc = services(cfg)
    deadline = time.monotonic() + cfg.stack.start_timeout_s
    out = {}
    for svc, start, ready in ((redis_svc, _start_redis, _redis_ready), (kafka, _start_kafka, _kafka_ready)):
        if svc.pid() is not None:
            out[svc.name] = "already running"
        else:
            if svc.answers():
                raise StackError(f"port {svc.port} is in use by another process; set stack.{svc.name}_port")
            start(cfg, svc)
            out[svc.name] = "started"
        _wait(svc, deadline, lambda r=ready: r(cfg))
    return out


def stop_process(proc, timeout_s: float, whole_group: bool = False) -> str:
    """Stops a pid-file process (a Service, or a Flink daemon in vadctl.cluster): SIGTERM, up to timeout_s
    to exit, then SIGKILL — of its whole process group when asked and it has one of its own. Returns
    "not running", "stopped" or "killed"; the pid file is gone afterwards."""
    pid = proc.pid()
    if pid is None:
        proc.pid_file.unlink(missing_ok=True)
        return "not running"
    pgid = os.getpgid(pid) if whole_group else None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while proc.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    result = "stopped"
    if proc.pid() is not None:
        if pgid is not None and pgid != os.getpgrp():
            os.killpg(pgid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
        result = "killed"
    child = _CHILDREN.pop(pid, None)
    if child is not None:  # ours: collect it, else it stays a zombie while this process lives
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _CHILDREN[pid] = child
    proc.pid_file.unlink(missing_ok=True)
    return result


def down(cfg: Config, timeout_s: float = 30.0) -> dict[str, str]:
    return {svc.name: stop_process(svc, timeout_s) for svc in services(cfg)}


def status(cfg: Config) -> dict[str, str]:
    out = {}
    for svc in services(cfg):
        pid = svc.pid()
        if pid is None:
            out[svc.name] = "stopped"
        else:
            out[svc.name] = f"running pid={pid} port={svc.port} answering={svc.answers()}"
    return out
