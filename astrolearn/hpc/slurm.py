"""SLURM: batch scripts for ``astrolearn submit``, following a job, and what a job's processes read.

A submitted command runs as ``srun python -m astrolearn.cli ...`` in a generated ``sbatch``
script (kept next to the logs), so that every process of a multi-node training is a SLURM task:
Lightning's ``SLURMEnvironment`` then gives each its rank, and auto-requeue (SIGUSR1 before the
time limit) works. Nothing here imports torch or Lightning.

Inside a job, :func:`array_task` tells a simulation which share of the shards is its own and
:func:`trainer_layout` tells ``fit`` how many nodes and processes per node the job has.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UserError

#: Job states after which a job (or array task) will not run again.
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "SPECIAL_EXIT", "REVOKED"}
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclass
class Resources:
    """What a job asks SLURM for (``None``: the cluster's default).

    Attributes
    ----------
    partition : str or None
    nodes : int
        Nodes of the job; one task per GPU (or one per node without GPUs) on each.
    gpus_per_node : int or None
    cpus_per_task : int or None
    mem : str or None
        Memory per node, in SLURM's notation (``16G``).
    time : str or None
        Time limit, in SLURM's notation (``MM``, ``HH:MM:SS``, ``D-HH:MM``...).
    array : int or None
        Number of array tasks (indices 0 to ``array - 1``).
    signal_s : int or None
        Seconds before the time limit at which the tasks get SIGUSR1 (checkpoint and requeue).
    job_name : str
    """

    partition: str | None = None
    nodes: int = 1
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    array: int | None = None
    signal_s: int | None = None
    job_name: str = "astrolearn"

    @property
    def tasks_per_node(self) -> int:
        return self.gpus_per_node or 1


def time_limit_s(text: str) -> int:
    """Seconds of a SLURM time limit (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``)."""
    found = _TIME.match(text.strip())
    if not found:
        raise UserError(f"--time {text!r}: expected MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS")
    days, *rest = found.groups()
    values = [int(v) for v in rest if v is not None]
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = sum(v * s for v, s in zip(values, (3600, 60, 1)))
        return int(days) * 86400 + seconds
    scale = {1: (60,), 2: (60, 1), 3: (3600, 60, 1)}[len(values)]
    return sum(v * s for v, s in zip(values, scale))


def requeue_signal_s(time_limit: str | None) -> int | None:
    """Warning before the time limit for a checkpoint (a tenth of the limit, 30 s to 5 min)."""
    if time_limit is None:
        return None
    return min(300, max(30, time_limit_s(time_limit) // 10))


def job_script(argv: list[str], resources: Resources, logs: Path, *, cwd: Path, python: str = sys.executable,
               setup: list[str] = ()) -> str:
    """The ``sbatch`` script running ``astrolearn ARGV`` with ``resources``.

    Parameters
    ----------
    argv : list of str
        The astrolearn command line, without the program name (``["psf", "train", ...]``).
    resources : Resources
    logs : Path
        Directory of the job's output (``JOBID.out``, or ``JOBID_TASK.out`` for an array).
    cwd : Path
        Directory the command runs in (the submitting shell's: relative paths keep their meaning).
    python : str
        Interpreter on the compute nodes (default: this one; nodes share its file system).
    setup : list of str
        Shell lines run before the command (``module load ...``, ``conda activate ...``).
    """
    r = resources
    output = logs / ("%A_%a.out" if r.array else "%j.out")
    options = [f"--job-name={r.job_name}", f"--output={output}", "--open-mode=append", "--requeue",
               f"--nodes={r.nodes}", f"--ntasks-per-node={r.tasks_per_node}"]
    optional = {"partition": r.partition, "gpus-per-node": r.gpus_per_node, "cpus-per-task": r.cpus_per_task,
                "mem": r.mem, "time": r.time}
    options += [f"--{key}={value}" for key, value in optional.items() if value is not None]
    if r.array:
        options.append(f"--array=0-{r.array - 1}")
    if r.signal_s:
        # To the tasks (not the batch shell): Lightning saves a checkpoint and requeues the job.
        options.append(f"--signal=USR1@{r.signal_s}")
    command = shlex.join([python, "-m", "astrolearn.cli", *argv])
    lines = ["#!/bin/bash", *(f"#SBATCH {o}" for o in options), "",
             f"cd {shlex.quote(str(cwd))}", *setup,
             # A restart after requeue appends to the same log: say where it begins.
             'echo "astrolearn: job ${SLURM_JOB_ID} on ${SLURM_JOB_NODELIST}, start ${SLURM_RESTART_COUNT:-0}, '
             '$(date -u +%FT%TZ)"',
             f"srun --kill-on-bad-exit=1 {command}", ""]
    return "\n".join(lines)


@dataclass
class Submitted:
    """A submitted job: its id and where its files are."""

    job_id: str
    script: Path
    config: Path
    logs: list[Path]


def submit(argv: list[str], resources: Resources, logs: Path, record: dict, *, setup: list[str] = ()) -> Submitted:
    """Submit ``astrolearn ARGV`` with ``sbatch`` and write its script and ``record`` next to its logs.

    ``record`` (the resolved command, its arguments and settings) is written as
    ``LOGS/JOBID.yaml`` with the job id, the resources and the script path added.
    """
    import yaml

    sbatch = _tool("sbatch")
    logs = Path(logs).resolve()
    if logs.exists() and not logs.is_dir():
        raise UserError(f"{logs}: exists and is not a directory (--logs is the directory of the job's logs)")
    made = [d for d in (logs, *logs.parents) if not d.exists()]
    logs.mkdir(parents=True, exist_ok=True)
    text = job_script(argv, resources, logs, cwd=Path.cwd(), setup=list(setup))
    pending = logs / f".submit-{os.getpid()}.sh"
    pending.write_text(text)
    try:
        done = subprocess.run([sbatch, "--parsable", str(pending)], capture_output=True, text=True)
        if done.returncode != 0:
            pending.unlink()
            for directory in made:  # a refused job leaves nothing behind
                directory.rmdir()
            raise UserError(f"sbatch refused the job: {_last_line(done.stderr)}")
        job_id = done.stdout.strip().split(";")[0]
        script = logs / f"{job_id}.sh"
        os.replace(pending, script)  # sbatch has read it: the copy kept is the one that runs
    finally:
        pending.unlink(missing_ok=True)
    config = logs / f"{job_id}.yaml"
    full = {"job_id": job_id, **record, "resources": asdict(resources), "script": str(script)}
    config.write_text(yaml.safe_dump(full, sort_keys=False))
    tasks = [f"{job_id}_{i}" for i in range(resources.array)] if resources.array else [job_id]
    return Submitted(job_id, script, config, [logs / f"{t}.out" for t in tasks])


def job_states(job_id: str) -> list[dict] | None:
    """``scontrol show job`` records of a job (one per array task); ``None`` once SLURM forgot it."""
    done = subprocess.run([_tool("scontrol"), "-o", "show", "job", job_id], capture_output=True, text=True)
    if done.returncode != 0:
        if "Invalid job id" in done.stderr:
            return None
        raise UserError(f"scontrol show job {job_id}: {_last_line(done.stderr)}")
    records = []
    for line in done.stdout.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        if fields.get("JobState"):
            records.append(fields)
    return records


def exit_status(record: dict) -> int:
    """Shell-style exit status of one finished job record (128 + N after signal N; 1 if it never ran to an end)."""
    code, _, sig = record.get("ExitCode", "0:0").partition(":")
    code, sig = int(code or 0), int(sig or 0)
    if sig:
        return 128 + sig
    if record["JobState"] != "COMPLETED" and code == 0:
        return 1
    return code


def wait(job_id: str, follow: list[Path] = (), poll_s: float = 2.0, out=sys.stdout) -> int:
    """Follow a job until every task has finished; the largest exit status of its tasks.

    Prints each change of state (requeues included) and copies what is appended to the files
    ``follow`` to ``out`` as it comes.
    """
    seen_state, offsets = {}, {}
    while True:
        records = job_states(job_id)
        for path in follow:
            offsets[path] = _copy_new(path, offsets.get(path, 0), out)
        if records is None:
            print(f"job {job_id}: no longer known to SLURM; exit status unknown", file=out, flush=True)
            return 1
        for r in records:
            task = r.get("JobId", job_id) if "ArrayTaskId" not in r else f"{r['ArrayJobId']}_{r['ArrayTaskId']}"
            state = r["JobState"]
            if seen_state.get(task) != state:
                where = f" on {r['NodeList']}" if state == "RUNNING" else ""
                print(f"job {task}: {state}{where}", file=out, flush=True)
                seen_state[task] = state
        pending_array = any("-" in r.get("ArrayTaskId", "") or "," in r.get("ArrayTaskId", "") for r in records)
        if records and not pending_array and all(r["JobState"] in FINAL_STATES for r in records):
            for path in follow:
                _copy_new(path, offsets.get(path, 0), out)
            return max(exit_status(r) for r in records)
        time.sleep(poll_s)


def array_task() -> tuple[int, int] | None:
    """(index, count) of this process's array task in a SLURM job array, counted from 0; ``None`` outside one."""
    if "SLURM_ARRAY_TASK_ID" not in os.environ:
        return None
    task, first = int(os.environ["SLURM_ARRAY_TASK_ID"]), int(os.environ.get("SLURM_ARRAY_TASK_MIN", 0))
    count = int(os.environ.get("SLURM_ARRAY_TASK_COUNT", int(os.environ.get("SLURM_ARRAY_TASK_MAX", task)) - first + 1))
    return task - first, count


def trainer_layout() -> dict:
    """``num_nodes`` and ``devices`` (processes per node) of the SLURM step this process is a task of.

    Empty outside a step of several tasks: there, Lightning's defaults (or ``LightningEnvironment``
    launching the processes itself) apply. In a step of N nodes x G tasks, Lightning's
    ``SLURMEnvironment`` needs ``num_nodes=N`` and ``devices=G``.
    """
    tasks = int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1")))
    if "SLURM_STEP_ID" not in os.environ or tasks < 2:
        return {}
    nodes = int(os.environ.get("SLURM_STEP_NUM_NODES", os.environ.get("SLURM_NNODES", "1")))
    if tasks % nodes:
        raise UserError(f"SLURM step of {tasks} tasks on {nodes} nodes: give every node as many tasks "
                        "(--ntasks-per-node), one per device")
    return {"num_nodes": nodes, "devices": tasks // nodes}


def requeued() -> bool:
    """Whether this process belongs to a SLURM job that was requeued (a restart of the same command)."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def _copy_new(path: Path, offset: int, out) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            chunk = f.read()
    except FileNotFoundError:
        return offset
    if chunk:
        out.write(chunk.decode(errors="replace"))
        out.flush()
    return offset + len(chunk)


def _tool(name: str) -> str:
    from shutil import which

    path = which(name)
    if path is None:
        raise UserError(f"{name}: not found; astrolearn submit runs on a SLURM login node (no {name} on PATH)")
    return path


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
