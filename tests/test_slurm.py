"""``astrolearn submit`` against a real SLURM: job arrays, 2-node DDP, checkpoint and requeue at SIGUSR1.

The tests marked ``slurm`` need a running cluster with two nodes (CI starts one on loopback with
``.ci/slurm-up.sh``, as root); without one they are skipped with the reason, or fail when
``ASTROLEARN_REQUIRE_SLURM`` is set (as in CI, so that a broken cluster cannot pass silently).
The jobs run ``python -m astrolearn.cli`` of this checkout (``PYTHONPATH``); the two nodes are
one host, so the DDP rendezvous address is 127.0.0.1 (on a real cluster Lightning takes the
first node of the job). The other tests check what ``submit`` writes and refuses, without SLURM.
"""

import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from psf_helpers import circular

from astrolearn.cli import main
from astrolearn.errors import UserError
from astrolearn.hpc import slurm
from astrolearn.hpc.slurm import Resources, job_script, time_limit_s

ROOT = Path(__file__).resolve().parents[1]
JOB_NAME = f"astrolearn-pytest-{os.getpid()}"
# A linear model trained by plain SGD: 2 ranks x 8 samples per step give the gradient of 16 in one process.
LINEAR = {"model": {"dim": 2, "blocks": [], "head": {"type": "regression"}},
          "optimizer": {"name": "sgd", "lr": 1e-3, "momentum": 0.0},
          "data": {"batch_size": 8, "val_fraction": 0.25, "num_workers": 0},
          "trainer": {"max_epochs": 2, "patience": None, "log_every_n_steps": 1, "accelerator": "cpu",
                      "process_group_timeout": 60}}


def _unreachable() -> str | None:
    if shutil.which("sbatch") is None:
        return "no SLURM here (no sbatch on PATH; CI starts one with .ci/slurm-up.sh as root)"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%t %D"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 10 s"
    if done.returncode != 0:
        return f"no SLURM controller reachable: {done.stderr.strip().splitlines()[-1:]}"
    up = sum(int(n) for state, n in (line.split() for line in done.stdout.splitlines())
             if state.rstrip("*~#") in ("idle", "mix", "alloc"))
    return None if up >= 2 else f"SLURM has {up} node(s) up, the tests need 2"


@pytest.fixture(scope="module")
def cluster():
    reason = _unreachable()
    if reason:
        if os.environ.get("ASTROLEARN_REQUIRE_SLURM"):
            pytest.fail(reason)
        pytest.skip(reason)
    yield
    subprocess.run(["scancel", "--name", JOB_NAME], capture_output=True)  # whatever a failed test left


def _env() -> dict:
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR") if key in os.environ}
    env.update(PYTHONPATH=str(ROOT), MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    return env


def submit(cwd, *args, wait=True, timeout=180):
    """``astrolearn submit [--wait] ARGS`` in ``cwd``; the completed process."""
    command = [sys.executable, "-m", "astrolearn.cli", "submit", "--job-name", JOB_NAME, *(["--wait"] if wait else []),
               *args]
    return subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def job_id(stdout: str) -> str:
    return stdout.split("submitted job ", 1)[1].split(":", 1)[0]


def write_instrument(path: Path) -> Path:
    path.write_text(yaml.safe_dump(circular(npix=32).to_dict()))
    return path


def simulate_here(directory: Path, n: int, seed: int, shard_size: int) -> Path:
    inst = write_instrument(directory.parent / "circ.yaml")
    assert main(["psf", "simulate", "--instrument", str(inst), "--n", str(n), "--shard-size", str(shard_size),
                 "--static", "none", "--seed", str(seed), "--out", str(directory), "--no-progress"]) == 0
    return directory


def write_config(path: Path, **trainer) -> Path:
    config = {**LINEAR, "trainer": {**LINEAR["trainer"], **trainer}}
    path.write_text(yaml.safe_dump(config))
    return path


def checkpoint(run: Path, name="last.ckpt") -> dict:
    return torch.load(run / "checkpoints" / name, map_location="cpu", weights_only=False)


@pytest.mark.slurm
def test_array_simulation_is_the_single_process_set(cluster, tmp_path):
    write_instrument(tmp_path / "circ.yaml")
    sim = ["psf", "simulate", "--instrument", "circ.yaml", "--n", "10", "--shard-size", "2", "--static", "none",
           "--seed", "3", "--no-progress"]
    done = submit(tmp_path, "--array", "2", "--", *sim, "--out", "array")
    assert done.returncode == 0, done.stdout + done.stderr
    job = job_id(done.stdout)
    assert f"job {job}: exit status 0" in done.stdout
    logs = tmp_path / "slurm-logs"
    assert "array task 1 of 2" in (logs / f"{job}_1.out").read_text(errors="replace")
    record = yaml.safe_load((logs / f"{job}.yaml").read_text())
    assert record["command"][:3] == ["astrolearn", "psf", "simulate"] and record["resources"]["array"] == 2
    assert record["arguments"]["seed"] == 3 and (logs / f"{job}.sh").is_file()

    # One process, with the tasks' thread count: torch's CPU rendering rounds differently on
    # other counts (~1e-7 relative; after Poisson noise, +-1 e- on a few pixels in 10^4).
    subprocess.run([sys.executable, "-m", "astrolearn.cli", *sim, "--out", "single"], cwd=tmp_path, env=_env(),
                   check=True, capture_output=True)
    single = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert single == sorted(p.name for p in (tmp_path / "array").iterdir())
    assert len(single) == 6  # 5 shards (3 made by task 0, 2 by task 1) and config.yaml
    for name in single:
        assert (tmp_path / "array" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name

    # A task that failed left a shard missing: the rerun makes that one only, the same bytes.
    (tmp_path / "array" / "shard-00003.h5").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "array").glob("shard-*.h5")}
    done = submit(tmp_path, "--array", "2", "--", *sim, "--out", "array")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {n: (tmp_path / "array" / n).stat().st_mtime_ns for n in kept} == kept
    assert (tmp_path / "array" / "shard-00003.h5").read_bytes() == (tmp_path / "single" / "shard-00003.h5").read_bytes()


@pytest.mark.slurm
def test_wait_exits_with_the_job_status(cluster, tmp_path):
    done = submit(tmp_path, "--", "psf", "train", "missing", "--out", "run")
    job = job_id(done.stdout)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"job {job}: FAILED" in done.stdout and f"job {job}: exit status 2" in done.stdout
    # The log is followed as it grows: the command's one-line error comes through.
    assert "astrolearn: error: missing: no such data directory" in done.stdout
    assert not (tmp_path / "run").exists()


@pytest.mark.slurm
def test_refused_job_leaves_nothing(cluster, tmp_path):
    done = submit(tmp_path, "--partition", "nowhere", "--", "psf", "train", "d", "--out", "r")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("astrolearn: error: sbatch refused the job: ") and "partition" in done.stderr
    assert len(done.stderr.splitlines()) == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.slurm
def test_two_node_ddp_matches_one_process(cluster, tmp_path):
    data = simulate_here(tmp_path / "data", n=32, seed=1, shard_size=16)  # 24 training samples
    config = write_config(tmp_path / "linear.yaml")
    command = [sys.executable, "-m", "astrolearn.cli", "submit", "--job-name", JOB_NAME, "--wait", "--nodes", "2",
               "--", "psf", "train", str(data), "--config", str(config), "--out", "ddp"]
    job = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    # Meanwhile, one process with both ranks' samples per step.
    assert main(["psf", "train", str(data), "--config", str(config), "--set", "data.batch_size=16",
                 "--out", str(tmp_path / "single")]) == 0
    output, _ = job.communicate(timeout=180)
    assert job.returncode == 0, output[-4000:]
    assert "on 2 cpu device(s)" in output and "RUNNING on n[1-2]" in output
    ddp, single = checkpoint(tmp_path / "ddp"), checkpoint(tmp_path / "single")
    assert ddp["global_step"] == single["global_step"] == 2 * 2  # 2 epochs of 2 steps
    assert set(ddp["state_dict"]) == set(single["state_dict"])
    for name, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][name], value, rtol=1e-5, atol=1e-6)
    record = yaml.safe_load((tmp_path / "slurm-logs" / f"{job_id(output)}.yaml").read_text())
    assert record["training_config"]["optimizer"]["name"] == "sgd" and record["resources"]["nodes"] == 2


def _validated_epochs(run: Path) -> list[int]:
    epochs = []
    for metrics in sorted((run / "csv").glob("version_*/metrics.csv")):
        with open(metrics) as f:
            epochs += [int(row["epoch"]) for row in csv.DictReader(f) if row.get("val/loss")]
    return epochs


@pytest.mark.slurm
def test_signalled_job_requeues_and_resumes(cluster, tmp_path):
    data = simulate_here(tmp_path / "data", n=128, seed=2, shard_size=64)  # 96 training samples
    config = write_config(tmp_path / "slow.yaml", max_epochs=4)
    train = ["psf", "train", str(data), "--config", str(config), "--set", "data.batch_size=2"]
    done = submit(tmp_path, "--", *train, "--out", "requeued", wait=False)
    assert done.returncode == 0, done.stdout + done.stderr
    job = job_id(done.stdout)
    log = tmp_path / "slurm-logs" / f"{job}.out"
    try:
        deadline = time.monotonic() + 120
        while "Epoch 0:" not in (log.read_text(errors="replace") if log.exists() else ""):  # training began
            assert time.monotonic() < deadline, "training did not start within 120 s"
            time.sleep(0.2)
        subprocess.run(["scancel", "--signal=USR1", job], check=True)
        # Meanwhile, the same training uninterrupted.
        assert main([*train, "--out", str(tmp_path / "straight")]) == 0
        deadline = time.monotonic() + 180
        while not all(r["JobState"] in slurm.FINAL_STATES for r in slurm.job_states(job)):
            assert time.monotonic() < deadline, "the requeued job did not end within 180 s"
            time.sleep(1)
    finally:
        subprocess.run(["scancel", job], capture_output=True)
    [record] = slurm.job_states(job)
    text = log.read_text(errors="replace")  # a killed step can tear a progress-bar character
    assert record["JobState"] == "COMPLETED" and int(record["Restarts"]) == 1, text[-3000:]
    assert f"job {job} on n1, start 1" in text or f"job {job} on n2, start 1" in text
    requeued, straight = tmp_path / "requeued", tmp_path / "straight"
    assert list((requeued / "checkpoints").glob("hpc_ckpt_*.ckpt")), "no checkpoint saved at SIGUSR1"
    assert checkpoint(requeued)["global_step"] == checkpoint(straight)["global_step"] == 4 * 48
    # Two starts, every epoch validated once: none lost, none repeated.
    assert len(list((requeued / "csv").glob("version_*"))) == 2
    assert _validated_epochs(requeued) == _validated_epochs(straight) == [0, 1, 2, 3]


# ---- without SLURM: the script, the record and what submit refuses ----

def test_job_script_asks_one_task_per_gpu_and_requeue(tmp_path):
    r = Resources(partition="gpu", nodes=4, gpus_per_node=4, cpus_per_task=8, mem="64G", time="2:00:00",
                  signal_s=slurm.requeue_signal_s("2:00:00"), job_name="astrolearn-psf-train")
    text = job_script(["psf", "train", "my data", "--out", "run"], r, tmp_path, cwd=Path("/work/x"),
                      python="/env/bin/python", setup=["module load cuda"])
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --mem=64G", "#SBATCH --time=2:00:00", "#SBATCH --partition=gpu",
                 "#SBATCH --requeue", "#SBATCH --signal=USR1@300", f"#SBATCH --output={tmp_path}/%j.out",
                 "cd /work/x", "module load cuda",
                 "srun --kill-on-bad-exit=1 /env/bin/python -m astrolearn.cli psf train 'my data' --out run"):
        assert line in text.splitlines(), line
    array = job_script(["psf", "simulate"], Resources(array=8), tmp_path, cwd=tmp_path)
    assert "#SBATCH --array=0-7" in array and f"--output={tmp_path}/%A_%a.out" in array and "--signal" not in array


@pytest.mark.parametrize("text, seconds", [("30", 1800), ("5:30", 330), ("1:00:00", 3600), ("2-0", 172800),
                                           ("1-2:30", 95400), ("1-00:00:10", 86410)])
def test_time_limit(text, seconds):
    assert time_limit_s(text) == seconds


def test_array_task_and_trainer_layout_from_the_environment(monkeypatch):
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    assert slurm.array_task() is None and slurm.trainer_layout() == {} and not slurm.requeued()
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "5")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert slurm.array_task() == (1, 3)
    monkeypatch.setenv("SLURM_NTASKS", "8")  # the job's tasks, outside a step: nothing to say
    assert slurm.trainer_layout() == {}
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    monkeypatch.setenv("SLURM_STEP_NUM_NODES", "2")
    assert slurm.trainer_layout() == {"num_nodes": 2, "devices": 4}
    monkeypatch.setenv("SLURM_STEP_NUM_NODES", "3")
    with pytest.raises(UserError, match="8 tasks on 3 nodes"):
        slurm.trainer_layout()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert slurm.requeued()


@pytest.mark.parametrize("args, message", [
    (["--array", "4", "--", "psf", "train", "d", "--out", "r"], "only psf simulate and redshift simulate"),
    (["--nodes", "2", "--", "psf", "simulate", "--instrument", "nirc2", "--n", "4", "--out", "s"],
     "only train runs across nodes"),
    (["--"], "no command to submit"),
    (["--", "submit", "--", "psf"], "cannot submit itself"),
    (["--time", "1h", "--", "psf", "train", "d", "--out", "r"], "--time '1h'"),
])
def test_submit_refuses(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["submit", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []  # no logs directory, no script


def test_submit_without_slurm_says_so(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    assert main(["submit", "--", "psf", "simulate", "--instrument", "nirc2", "--n", "4", "--out", "s"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("astrolearn: error: sbatch: not found; astrolearn submit runs on a SLURM login node "
                   "(no sbatch on PATH)")
    assert list(tmp_path.iterdir()) == []
