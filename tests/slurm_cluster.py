"""A throwaway single-node SLURM cluster (munged, slurmctld, slurmd) for the SLURM tests.

Everything lives in one temporary folder: munge key and socket, slurm.conf, state, spool and logs.
The daemons listen on free ports and use their own munge socket, so a system SLURM or munge on the
same machine is neither used nor disturbed; at the end exactly the processes started here stop.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "sinfo", "squeue")
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
                "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def unavailable_reason() -> str | None:
    """Why this machine cannot run the cluster, or None when it can."""
    if os.geteuid() != 0:
        return "SLURM tests need root (slurmd runs jobs as their user and must switch to it)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found: apt-get install -y slurm-wlm munge"
    return None


def clean_environment(conf: Path) -> dict[str, str]:
    """This process's environment without SLURM/SBATCH settings (tests may run inside a job),
    pointing the SLURM tools at our slurm.conf."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SRUN_"))}
    env["SLURM_CONF"] = str(conf)
    return env


class Cluster:
    """Submit jobs, follow them and read their logs. Job ids are strings (`"12"`, `"12_1"`)."""

    def __init__(self, env: dict[str, str]):
        self.env = env

    def command(self, *args: str) -> str:
        """Run a SLURM client command against this cluster; raise with its stderr if it fails."""
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def sbatch(self, script: str, *flags: str, env: dict[str, str] | None = None, cwd: str | None = None) -> str:
        """Submit `script` with sbatch flags; extra `env` is exported to the job. Returns the job id."""
        return self.submit("sbatch", "--parsable", *flags, script, env=env, cwd=cwd)

    def submit(self, *argv: str, env: dict[str, str] | None = None, cwd: str | None = None) -> str:
        """Run a submitting command (one that ends in `sbatch --parsable`); returns the job id."""
        done = subprocess.run(argv, env={**self.env, **(env or {})}, cwd=cwd, capture_output=True,
                              text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip().split(";")[0]

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """`scontrol show job` records of a job (one per array task), as key -> value."""
        out = self.command("scontrol", "--oneliner", "show", "job", job_id)
        return [_parse_record(line) for line in out.splitlines() if line.strip()]

    def wait(self, job_id: str, timeout: float) -> list[dict[str, str]]:
        """Wait until every record of the job is in a final state; return the records."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.jobs(job_id)
            if all(r["JobState"] in FINAL_STATES for r in records):
                return records
            if time.monotonic() > deadline:
                states = {r["JobId"]: r["JobState"] for r in records}
                raise TimeoutError(f"job {job_id} not finished after {timeout:.0f} s: {states}")
            time.sleep(0.5)

    def log(self, record: dict[str, str]) -> str:
        path = Path(record["StdOut"])
        return path.read_text() if path.exists() else ""

    def cancel_all(self, timeout: float = 30) -> None:
        """Cancel every job of this cluster and wait until they are gone from the node."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.command("scancel", "--user", "root")
            deadline = time.monotonic() + timeout
            while self.command("squeue", "--noheader", "--states=RUNNING,COMPLETING").strip():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)


def _parse_record(line: str) -> dict[str, str]:
    """`Key=Value Key=Value ...`; values without spaces are all we read."""
    return dict(field.split("=", 1) for field in line.split() if "=" in field)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_config(root: Path, node: str) -> Path:
    """munge key and slurm.conf for one node that is both controller and compute node."""
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(mode=0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    cpus = os.cpu_count() or 1
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 // 2
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=hiergen_test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root / "munge" / "munge.socket"}
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "log" / "slurmctld.log"}
SlurmdLogFile={root / "log" / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
ReturnToService=2
MinJobAge=3600
KillWait=5
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
""")
    return conf


class _Daemons:
    """The processes started here, stopped in reverse order by their own pids."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env = root, env
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, *args: str) -> None:
        with open(self.root / "log" / f"{name}.out", "wb") as out:
            proc = subprocess.Popen([name, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((name, proc))

    def check_running(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")

    def logs(self) -> str:
        parts = [f"--- {p.name}\n" + p.read_text(errors="replace")[-2000:]
                 for p in sorted((self.root / "log").iterdir())]
        return "\n".join(parts)

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until(condition, timeout: float, what: str, daemons: _Daemons) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        daemons.check_running()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} after {timeout:.0f} s:\n{daemons.logs()}")
        time.sleep(0.2)


@contextlib.contextmanager
def local_cluster(root: Path) -> Iterator[Cluster]:
    """Start munged, slurmctld and slurmd under `root`, wait until the node is idle, yield a
    Cluster; on exit cancel its jobs and stop the three daemons."""
    node = socket.gethostname().split(".")[0]
    conf = _write_config(root, node)
    env = clean_environment(conf)
    cluster = Cluster(env)
    daemons = _Daemons(root, env)
    munge = root / "munge"
    try:
        # --force: munged otherwise refuses root-owned state under a world-writable /tmp
        daemons.start("munged", "--foreground", "--force", f"--socket={munge / 'munge.socket'}",
                      f"--key-file={munge / 'munge.key'}", f"--pid-file={munge / 'munged.pid'}",
                      f"--seed-file={munge / 'munged.seed'}", f"--log-file={root / 'log' / 'munged.log'}")
        _wait_until((munge / "munge.socket").exists, 20, "munged has no socket", daemons)
        daemons.start("slurmctld", "-D", "-i", "-f", str(conf))
        daemons.start("slurmd", "-D", "-N", node, "-f", str(conf))
        _wait_until(lambda: _node_state(cluster) == "idle", 60, "the node is not idle", daemons)
        yield cluster
    finally:
        if daemons.procs:
            cluster.cancel_all()
        daemons.stop()


def _node_state(cluster: Cluster) -> str:
    try:
        return cluster.command("sinfo", "--noheader", "--format=%t").strip()
    except (RuntimeError, subprocess.TimeoutExpired):
        return ""
