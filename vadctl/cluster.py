"""Flink session cluster: a local standalone one (`vad stack up --cluster`) and the job's life cycle on
any session cluster (`vad submit`, `vad savepoint`, `vad cancel`).

Local cluster: one JobManager and one TaskManager on 127.0.0.1, started with the distribution's own
``bin/jobmanager.sh`` and ``bin/taskmanager.sh`` (the pyflink package ships Flink's bin/, lib/, opt/)
and ``FLINK_CONF_DIR`` pointing at a config generated in ``<stack.state_dir>/flink/conf``; logs, pid
files and Flink's temporary files live next to it. ``down`` stops only daemons whose pid file is in
that folder and whose command line names that conf folder.

Submission is the PyFlink CLI: ``flink run -d -m HOST:PORT -pyfs <zip of the project's packages>
-Dpipeline.jars=<Kafka connector> [-s SAVEPOINT] -pym jobs.anomaly_job [--config FILE]``. The job's
main runs on the submitting host, in a Python process the Flink CLI starts: ``--config`` and the
``VAD_*`` environment are read there, and the operators reach the TaskManagers with their settings
pickled. Savepoints, stops and cancels use the REST API (no client JVM per call).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from vad.config import LOCAL_CHECKPOINT_DIR, LOCAL_SAVEPOINT_DIR, REPO_ROOT, Config, state_dir
from vad.jvm import with_tmpdir
from vadctl.stack import Service, StackError, stop_process

log = logging.getLogger(__name__)

PACKAGES = ("jobs", "udfs", "vad", "models")  # what the Python workers import (models/ holds the model too)
JOB_MODULE = "jobs.anomaly_job"
_IDENT = "vad"  # FLINK_IDENT_STRING: part of the daemons' pid and log file names
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")
# Cluster-internal or loopback addresses: never through an HTTP proxy taken from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ClusterError(StackError):
    pass


# -- local standalone cluster -------------------------------------------------------------------


def flink_home(cfg: Config) -> Path:
    if cfg.cluster.flink_home is not None:
        return cfg.resolve(cfg.cluster.flink_home)
    spec = importlib.util.find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        raise ClusterError("pyflink is not installed: run `make setup`")
    return Path(next(iter(spec.submodule_search_locations)))


def cluster_dir(cfg: Config) -> Path:
    return state_dir(cfg) / "flink"


def rest_port(cfg: Config) -> int:
    return int(cfg.cluster.rest_address.rsplit(":", 1)[1])


@dataclass(frozen=True)
class Daemon:
    name: str  # jobmanager | taskmanager: the bin/ script
    kind: str  # flink-daemon.sh's name for it, part of the pid file name
    base: Path

    @property
    def pid_file(self) -> Path:
        return self.base / "pid" / f"flink-{_IDENT}-{self.kind}.pid"

    def pid(self) -> int | None:
        try:
            lines = self.pid_file.read_text().split()
        except FileNotFoundError:
            return None
        for raw in reversed(lines):
            try:
                pid = int(raw)
                cmd = _read_proc(pid, "cmdline")
            except (OSError, ValueError):
                continue
            # A recycled pid running something else is not ours: ours name our conf folder
            # (--configDir, also in the script's forked shell before it execs java).
            if str(self.base / "conf").encode() in cmd.split(b"\0"):
                return pid
            # An empty command line is a zombie or a process inside execve (between the kernel's
            # swap of its memory map and its writing the new arguments: 0.1-0.2 ms measured here
            # for java, right when the start script has returned). The working directory tells
            # them apart: a zombie has none, and our daemons run in this folder (up()'s cwd).
            cwd = _cwd(pid) if not cmd else None
            if cwd is not None and cwd.is_relative_to(self.base):
                return pid
        return None

    def logs(self) -> str:
        files = sorted((self.base / "log").glob(f"flink-{_IDENT}-{self.kind}-*"))
        return "\n".join(f"--- {f}\n{f.read_text(errors='replace')[-3000:]}" for f in files)


def _read_proc(pid: int, name: str) -> bytes:
    return Path(f"/proc/{pid}/{name}").read_bytes()


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None  # gone, a zombie, or not ours to read


def daemons(cfg: Config) -> tuple[Daemon, Daemon]:
    base = cluster_dir(cfg)
    return Daemon("jobmanager", "standalonesession", base), Daemon("taskmanager", "taskexecutor", base)


def _flatten(d: dict, prefix: str = "") -> dict:
    out: dict = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def write_conf(cfg: Config) -> Path:
    """FLINK_CONF_DIR for the local cluster: the distribution's defaults (they carry the JDK 17
    --add-opens flags) overridden for one machine, loopback only, small memory."""
    home, base, c = flink_home(cfg), cluster_dir(cfg), cfg.cluster
    conf, lib = base / "conf", base / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    for d in (conf, lib, base / "log", base / "pid", base / "tmp"):
        d.mkdir(parents=True, exist_ok=True)
    for f in (home / "conf").iterdir():
        if f.suffix in (".properties", ".xml"):
            shutil.copy(f, conf / f.name)
    # FLINK_LIB_DIR: the distribution's lib/ plus opt/flink-python (what the Flink docs have you copy
    # into lib/ for PyFlink): the JobManager needs its operator classes to load a Python job's graph.
    for jar in [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python-*.jar")]:
        (lib / jar.name).symlink_to(jar)
    settings = _flatten(yaml.safe_load((home / "conf" / "config.yaml").read_text()) or {})
    settings.update(
        {
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": c.rpc_port,
            "jobmanager.bind-host": "127.0.0.1",
            "jobmanager.memory.process.size": f"{c.jobmanager_memory_mb}m",
            "taskmanager.host": "127.0.0.1",
            "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": c.task_slots,
            "taskmanager.memory.process.size": f"{c.taskmanager_memory_mb}m",
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": rest_port(cfg),
            "parallelism.default": 1,
            # Python workers run this interpreter: the venv with onnxruntime, numpy and pyflink.
            "python.executable": sys.executable,
            # Blobs, Python worker folders and the web upload folder go with the state folder.
            "io.tmp.dirs": str(base / "tmp"),
            "web.tmpdir": str(base / "tmp" / "web"),
            # Where this cluster's jobs keep snapshots unless their config names a directory.
            "execution.checkpointing.dir": cfg.resolve_uri(cfg.job.checkpoint_dir or LOCAL_CHECKPOINT_DIR),
            "execution.checkpointing.savepoint-dir": cfg.resolve_uri(cfg.job.savepoint_dir or LOCAL_SAVEPOINT_DIR),
        }
    )
    # The JVMs' own temporary files (the native libraries the Kafka client unpacks) too.
    if opts := with_tmpdir(str(settings.get("env.java.opts.all", "")), base / "tmp"):
        settings["env.java.opts.all"] = opts
    header = "# Written by `vad stack up --cluster` (vadctl/cluster.py); rewritten on every start.\n"
    (conf / "config.yaml").write_text(header + yaml.safe_dump(settings, sort_keys=True, width=1 << 16))
    return conf


def _daemon_env(cfg: Config) -> dict[str, str]:
    base = cluster_dir(cfg)
    return {
        **os.environ,
        "FLINK_CONF_DIR": str(base / "conf"),
        "FLINK_LOG_DIR": str(base / "log"),
        "FLINK_PID_DIR": str(base / "pid"),
        "FLINK_LIB_DIR": str(base / "lib"),
        "FLINK_IDENT_STRING": _IDENT,
    }


def up(cfg: Config) -> dict[str, str]:
    host = cfg.cluster.rest_address.rsplit(":", 1)[0]
    if host not in ("127.0.0.1", "localhost"):
        raise ClusterError(f"cluster.rest_address {cfg.cluster.rest_address} is not local: `--cluster` starts one here")
    ds = daemons(cfg)
    deadline = time.monotonic() + cfg.cluster.start_timeout_s
    todo = [d for d in ds if d.pid() is None]
    if todo:
        if len(todo) == len(ds):
            for port, key in ((rest_port(cfg), "rest_address"), (cfg.cluster.rpc_port, "rpc_port")):
                if Service("flink", port, cluster_dir(cfg)).answers():
                    raise ClusterError(f"port {port} is in use by another process; set cluster.{key}")
            write_conf(cfg)  # a running JobManager keeps the config it started with
        home = flink_home(cfg)
        # Both scripts at once: each runs Flink's config and memory utilities (JVMs) before forking.
        # Own process group per daemon (start_new_session), see down().
        kw = dict(env=_daemon_env(cfg), cwd=cluster_dir(cfg), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        kw.update(stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        procs = [subprocess.Popen(["bash", str(home / "bin" / f"{d.name}.sh"), "start"], **kw) for d in todo]
        for d, p in zip(todo, procs, strict=True):
            try:
                out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                raise ClusterError(f"bin/{d.name}.sh start did not return in time") from None
            if p.returncode != 0:
                raise ClusterError(f"bin/{d.name}.sh start failed:\n{out}")
    _wait_ready(cfg, deadline)
    return {f"flink-{d.name}": "started" if d in todo else "already running" for d in ds}


def _wait_ready(cfg: Config, deadline: float) -> None:
    """Until the JobManager's REST answers and the TaskManager's slots have registered."""
    want, last = cfg.cluster.task_slots, ""
    while time.monotonic() < deadline:
        for d in daemons(cfg):
            if d.pid() is None:
                raise ClusterError(f"flink {d.name} exited during start:\n{d.logs()}")
        try:
            ov = rest(cfg, "GET", "/overview", timeout=2)
            if ov.get("taskmanagers", 0) >= 1 and ov.get("slots-total", 0) >= want:
                return
            last = json.dumps(ov)
        except ClusterError as e:
            last = str(e)
        time.sleep(0.5)
    raise ClusterError(f"Flink cluster not ready in time ({last}); logs in {cluster_dir(cfg) / 'log'}")


def down(cfg: Config, timeout_s: float = 30.0) -> dict[str, str]:
    # TaskManager first: its tasks end while the JobManager is there. SIGTERM lets Flink shut down
    # cleanly, the TaskManager with its Python workers; a SIGKILL takes the process group made by up(),
    # which holds the daemon and the Python workers it started.
    return {f"flink-{d.name}": stop_process(d, timeout_s, whole_group=True) for d in reversed(daemons(cfg))}


def status(cfg: Config) -> dict[str, str]:
    out = {}
    for d in daemons(cfg):
        pid = d.pid()
        out[f"flink-{d.name}"] = "stopped" if pid is None else f"running pid={pid}"
    try:
        ov = rest(cfg, "GET", "/overview", timeout=2)
        out["flink-rest"] = (
            f"{cfg.cluster.rest_address} flink={ov.get('flink-version')} taskmanagers={ov.get('taskmanagers')} "
            f"slots={ov.get('slots-available')}/{ov.get('slots-total')} jobs_running={ov.get('jobs-running')}"
        )
    except ClusterError as e:
        out["flink-rest"] = str(e)
    return out


# -- REST --------------------------------------------------------------------------------------


def rest(cfg: Config, method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> dict:
    url = f"http://{cfg.cluster.rest_address}{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with _HTTP.open(req, timeout=timeout) as r:
            raw = r.read()
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")[:2000]
        raise ClusterError(f"{method} {path}: HTTP {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ClusterError(f"Flink REST at {cfg.cluster.rest_address} unreachable: {e}") from None
    return json.loads(raw) if raw else {}


def jobs(cfg: Config) -> list[dict]:
    return rest(cfg, "GET", "/jobs/overview").get("jobs", [])


def job_state(cfg: Config, job_id: str) -> str:
    return rest(cfg, "GET", f"/jobs/{job_id}")["state"]


def wait_state(cfg: Config, job_id: str, states: set[str], timeout_s: float, all_tasks: bool = False) -> str:
    """Until the job is in one of `states`; with all_tasks, its tasks too (a RUNNING job may still be
    deploying them)."""
    deadline, state = time.monotonic() + timeout_s, "?"
    while time.monotonic() < deadline:
        job = rest(cfg, "GET", f"/jobs/{job_id}")
        state = job["state"]
        if state in states and (not all_tasks or all(v["status"] == state for v in job["vertices"])):
            return state
        if state in {"FAILED", "CANCELED", "FINISHED"}:
            raise ClusterError(f"job {job_id} is {state}, expected {sorted(states)}")
        time.sleep(0.5)
    raise ClusterError(f"job {job_id} still {state} after {timeout_s:.0f}s, expected {sorted(states)}")


# -- the job's life cycle ----------------------------------------------------------------------


def _uri(cfg: Config, where: str) -> str:
    # Flink reports locations as file:/path; config paths are repository-relative or absolute.
    if where.startswith("file:") and not where.startswith("file://"):
        return Path(where[len("file:") :]).as_uri()
    return cfg.resolve_uri(where)


def package_sources(dest: Path) -> Path:
    """The project's packages in one zip for ``-pyfs``: Flink extracts a .zip and puts its root on
    the workers' PYTHONPATH (a plain directory would be put there itself, hiding the package name)."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        for pkg in PACKAGES:
            for f in sorted((REPO_ROOT / pkg).rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts:
                    z.write(f, f.relative_to(REPO_ROOT).as_posix())
    return dest


def _run(argv: list[str], timeout_s: float, **kw) -> subprocess.CompletedProcess:
    # The CLI's JVM and the Python client it starts share a new process group: a timeout ends both.
    p = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **kw
    )
    try:
        out, _ = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise ClusterError(f"`flink run` did not return in {timeout_s:.0f}s:\n{out[-4000:]}") from None
    return subprocess.CompletedProcess(argv, p.returncode, out, "")


def submit(cfg: Config, config_path: str | None = None, from_savepoint: str | None = None, non_restored=False) -> str:
    """Submit the job, detached, to the session cluster at cluster.rest_address; returns its id."""
    from jobs.runtime import connector_jars

    rest(cfg, "GET", "/overview", timeout=5)  # fail fast: the CLI's client would retry for minutes
    env = {**os.environ, "FLINK_LOG_DIR": str(cluster_dir(cfg) / "log")}  # not into site-packages
    env.setdefault("JVM_ARGS", "-Xmx512m")  # the client JVM; its default is 1/4 of the RAM
    Path(env["FLINK_LOG_DIR"]).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vad-submit-") as tmp:
        # The client JVM's own temporary files (PyFlink's distributed-cache folder) go with the rest
        # of the submission; left in /tmp, every submit added one.
        env["JVM_ARGS"] = with_tmpdir(env["JVM_ARGS"], tmp)
        argv = ["bash", str(flink_home(cfg) / "bin" / "flink"), "run", "--detached", "-m", cfg.cluster.rest_address]
        # The workers' interpreter: this venv's path, so the TaskManagers must have it (same machine,
        # or an image built like docker/Dockerfile); -pyarch would ship a packed venv instead.
        argv += ["-pyclientexec", sys.executable, "-pyexec", sys.executable]
        argv += ["-pyfs", str(package_sources(Path(tmp) / "vad-job.zip"))]
        argv.append("-Dpipeline.jars=" + ";".join(p.as_uri() for p in connector_jars()))
        if from_savepoint:
            where = _uri(cfg, from_savepoint)
            argv += ["--fromSavepoint", where, *(["--allowNonRestoredState"] if non_restored else [])]
            # job.restore_from, if set, would override -s in the program's own configuration.
            env["VAD_JOB__RESTORE_FROM"] = where
        # -pym with the repository as working directory: the client imports the project from the
        # repository (sys.path[0] = cwd), so repository-relative config paths (model, checkpoints,
        # connector jar) resolve there and not inside the extracted zip, which -pyfs puts before
        # anything else on PYTHONPATH.
        argv += ["-pym", JOB_MODULE, *(["--config", str(Path(config_path).resolve())] if config_path else [])]
        log.info("submitting to %s: %s", cfg.cluster.rest_address, " ".join(argv))
        res = _run(argv, cfg.cluster.submit_timeout_s, cwd=REPO_ROOT, env=env)
    m = _JOB_ID.search(res.stdout)
    if res.returncode != 0 or m is None:
        raise ClusterError(f"`flink run` failed (exit {res.returncode}):\n{res.stdout[-6000:]}")
    log.debug("flink run output:\n%s", res.stdout)
    return m.group(1)


def _await_savepoint(cfg: Config, job_id: str, trigger: str, deadline: float) -> str:
    while time.monotonic() < deadline:
        r = rest(cfg, "GET", f"/jobs/{job_id}/savepoints/{trigger}")
        if r.get("status", {}).get("id") == "COMPLETED":
            op = r.get("operation") or {}
            if "failure-cause" in op:
                cause = op["failure-cause"].get("stack-trace", str(op["failure-cause"]))
                raise ClusterError(f"savepoint of job {job_id} failed: {cause[:3000]}")
            return op["location"]
        time.sleep(0.5)
    raise ClusterError(f"savepoint of job {job_id} not complete in time")


def savepoint(cfg: Config, job_id: str, target: str | None = None) -> str:
    """Trigger a savepoint of a running job and wait for it; returns its location."""
    deadline = time.monotonic() + cfg.cluster.savepoint_timeout_s
    body: dict = {"cancel-job": False}
    if target or cfg.job.savepoint_dir:  # else the cluster's execution.checkpointing.savepoint-dir
        body["target-directory"] = _uri(cfg, target or cfg.job.savepoint_dir)
    trig = rest(cfg, "POST", f"/jobs/{job_id}/savepoints", body)
    return _await_savepoint(cfg, job_id, trig["request-id"], deadline)


def stop(cfg: Config, job_id: str, target: str | None = None, drain: bool = False) -> str:
    """Stop with a savepoint (`flink stop`): sources stop, the savepoint commits the exactly-once
    sinks' transactions, the job ends FINISHED. drain=True also flushes event-time timers (only for
    a job that will not be resumed). Returns the savepoint location."""
    deadline = time.monotonic() + cfg.cluster.savepoint_timeout_s
    body: dict = {"drain": drain}
    if target or cfg.job.savepoint_dir:  # else the cluster's execution.checkpointing.savepoint-dir
        body["targetDirectory"] = _uri(cfg, target or cfg.job.savepoint_dir)
    trig = rest(cfg, "POST", f"/jobs/{job_id}/stop", body)
    location = _await_savepoint(cfg, job_id, trig["request-id"], deadline)
    wait_state(cfg, job_id, {"FINISHED"}, max(1.0, deadline - time.monotonic()))
    return location


def cancel(cfg: Config, job_id: str) -> None:
    """Cancel without a savepoint (the last retained checkpoint stays, see jobs/runtime.py)."""
    rest(cfg, "PATCH", f"/jobs/{job_id}?mode=cancel")
    wait_state(cfg, job_id, {"CANCELED"}, cfg.cluster.savepoint_timeout_s)
