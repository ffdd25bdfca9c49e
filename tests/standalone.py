"""A real Spark standalone cluster on 127.0.0.1 for the tests: one master, N workers, each its own JVM.

Started from the installed pyspark package (its ``sbin/spark-daemon.sh`` and
``bin/spark-class``), with free ports and private pid, log, conf and work
folders, so that it shares nothing with other Spark processes on the machine.
:meth:`StandaloneCluster.stop` stops every process it started (the daemons
through ``spark-daemon.sh stop``, then anything still alive by the pids in its
pid folder, then any process left whose working folder or command line lies
under its private folder: executors and their Python workers), whatever
state the cluster is in.

>>> with StandaloneCluster(tmp_path, workers=2) as cluster:   # doctest: +SKIP
...     cluster.master_url                                      # spark://127.0.0.1:PORT
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pyspark

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"


class ClusterError(RuntimeError):
    """The cluster could not be started (Java missing, a port taken, a daemon that died)."""


def spark_home() -> Path:
    """``SPARK_HOME`` if set, else the installed pyspark package (it ships bin/ and sbin/)."""
    return Path(os.environ.get("SPARK_HOME") or Path(pyspark.__file__).parent)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def processes_under(folder: Path) -> list[int]:
    """Pids of the processes whose working folder or command line lies under ``folder`` (not this one)."""
    where = str(folder.resolve())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd == where or cwd.startswith(where + os.sep) or where in cmd:
            found.append(int(proc.name))
    return found


class StandaloneCluster:
    """A master and ``workers`` workers (``cores`` and ``memory`` each) under ``root``."""

    def __init__(self, root: Path, *, workers: int = 2, cores: int = 1, memory: str = "2g",
                 daemon_memory: str = "256m", start_timeout: float = 120.0):
        self.root = Path(root).resolve()
        self.n_workers, self.cores, self.memory = workers, cores, memory
        self.start_timeout = start_timeout
        self.home = spark_home()
        self.pid_dir, self.log_dir, self.conf_dir = self.root / "pids", self.root / "logs", self.root / "conf"
        self.host = "127.0.0.1"
        self.port, self.ui_port = free_port(), free_port()
        self.worker_ui_ports = [free_port() for _ in range(workers)]
        self.env = {
            **os.environ, "SPARK_HOME": str(self.home), "SPARK_LOCAL_IP": self.host,
            "SPARK_PID_DIR": str(self.pid_dir), "SPARK_LOG_DIR": str(self.log_dir),
            "SPARK_CONF_DIR": str(self.conf_dir), "SPARK_IDENT_STRING": "shmitest",
            "SPARK_DAEMON_MEMORY": daemon_memory,
        }
        for name in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "SPARK_MASTER", "SPARK_NO_DAEMONIZE"):
            self.env.pop(name, None)

    # ---- where things are
    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    def work_dir(self, i: int) -> Path:
        """Worker ``i``'s (1-based) work folder: app-*/<executor id>/ per executor it ran."""
        return self.root / f"work{i}"

    def pid_file(self, cls: str, instance: int) -> Path:
        return self.pid_dir / f"spark-shmitest-{cls}-{instance}.pid"

    def pid_of(self, cls: str, instance: int) -> int | None:
        f = self.pid_file(cls, instance)
        return int(f.read_text().strip()) if f.is_file() else None

    # ---- the REST views
    def _json(self, port: int) -> dict:
        with urllib.request.urlopen(f"http://{self.host}:{port}/json/", timeout=5) as r:
            return json.loads(r.read())

    def master_state(self) -> dict:
        return self._json(self.ui_port)

    def worker_state(self, i: int) -> dict:
        return self._json(self.worker_ui_ports[i - 1])

    def alive_workers(self) -> list[dict]:
        try:
            return [w for w in self.master_state().get("workers", []) if w.get("state") == "ALIVE"]
        except OSError:
            return []

    # ---- life cycle
    def _daemon(self, action: str, cls: str, instance: int, *args: str) -> None:
        done = subprocess.run([str(self.home / "sbin" / "spark-daemon.sh"), action, cls, str(instance), *args],
                              env=self.env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0 and action == "start":
            raise ClusterError(f"spark-daemon.sh start {cls} {instance} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}\n{self.logs_tail()}")

    def start(self) -> StandaloneCluster:
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise ClusterError("Java is needed for a Spark cluster: no 'java' on PATH and JAVA_HOME unset")
        for d in (self.pid_dir, self.log_dir, self.conf_dir):
            d.mkdir(parents=True, exist_ok=True)
        # the daemons' own settings: no reverse DNS lookups, quick cleanup off, nothing from another conf dir
        (self.conf_dir / "spark-defaults.conf").write_text("spark.ui.showConsoleProgress false\n")
        self._daemon("start", MASTER_CLASS, 1, "--host", self.host, "--port", str(self.port),
                     "--webui-port", str(self.ui_port))
        for i in range(1, self.n_workers + 1):
            self.work_dir(i).mkdir(parents=True, exist_ok=True)
            self._daemon("start", WORKER_CLASS, i, "--host", self.host, "--port", str(free_port()),
                         "--webui-port", str(self.worker_ui_ports[i - 1]), "--cores", str(self.cores),
                         "--memory", self.memory, "--work-dir", str(self.work_dir(i)), self.master_url)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if len(self.alive_workers()) == self.n_workers:
                return self
            for cls, instance in [(MASTER_CLASS, 1), *[(WORKER_CLASS, i) for i in range(1, self.n_workers + 1)]]:
                pid = self.pid_of(cls, instance)
                if pid is None or not _pid_alive(pid):
                    raise ClusterError(f"the {cls.rsplit('.', 1)[-1]} {instance} died while starting:\n"
                                       f"{self.logs_tail()}")
            time.sleep(0.5)
        raise ClusterError(f"{len(self.alive_workers())} of {self.n_workers} workers ALIVE after "
                           f"{self.start_timeout:.0f}s on {self.master_url}:\n{self.logs_tail()}")

    def kill_worker(self, i: int) -> list[int]:
        """SIGKILL worker ``i`` and every process under its work folder (its executors and their Python)."""
        killed = []
        pid = self.pid_of(WORKER_CLASS, i)
        for p in dict.fromkeys([*([pid] if pid else []), *processes_under(self.work_dir(i))]):
            try:
                os.kill(p, signal.SIGKILL)
                killed.append(p)
            except ProcessLookupError:
                pass
        return killed

    def stop(self) -> None:
        """Stop everything this cluster started, whatever state it is in (never raises)."""
        for i in range(self.n_workers, 0, -1):
            self._quiet(lambda i=i: self._daemon("stop", WORKER_CLASS, i))
        self._quiet(lambda: self._daemon("stop", MASTER_CLASS, 1))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = self.leftover_pids()
            if not left:
                return
            time.sleep(0.5)
        for pid in self.leftover_pids():
            self._quiet(lambda pid=pid: os.kill(pid, signal.SIGKILL))
            self._quiet(lambda pid=pid: os.kill(pid, signal.SIGCONT))  # a stopped process too
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.leftover_pids():
            time.sleep(0.2)

    def leftover_pids(self) -> list[int]:
        """Pids of this cluster's processes still alive: the daemons by their pid files, and anything
        whose working folder or command line lies under the cluster's folder."""
        pids = set()
        if self.pid_dir.is_dir():
            for f in self.pid_dir.glob("*.pid"):
                try:
                    pids.add(int(f.read_text().strip()))
                except (OSError, ValueError):
                    pass
        pids.update(processes_under(self.root))
        return sorted(p for p in pids if _pid_alive(p))

    @staticmethod
    def _quiet(action) -> None:
        try:
            action()
        except Exception:  # noqa: BLE001 - stopping must go on whatever fails
            pass

    def logs_tail(self, lines: int = 30) -> str:
        out = []
        for f in sorted(self.log_dir.glob("*.out")) if self.log_dir.is_dir() else []:
            text = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {f.name}\n" + "\n".join(text))
        return "\n".join(out)

    def __enter__(self) -> StandaloneCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
