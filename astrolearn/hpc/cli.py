"""``astrolearn submit [SLURM options] -- COMMAND ...``: run an astrolearn command as a SLURM job."""

from __future__ import annotations

import argparse
import sys

from ..cliargs import positive_int

#: Verbs that a job array splits (each task simulates its share of the shards).
ARRAY_VERBS = {("psf", "simulate"), ("redshift", "simulate")}


def register(sub) -> None:
    p = sub.add_parser(
        "submit", help="run an astrolearn command as a SLURM job (job arrays, multi-node training)",
        description="Submit `astrolearn COMMAND ...` to SLURM with sbatch: one srun task per GPU (one per node "
        "without GPUs). `psf/redshift simulate` with --array K runs as K tasks, each writing its share of the "
        "shards (the same bytes as one process); `train` on several nodes runs with DDP, and before --time runs "
        "out it saves a checkpoint and requeues itself, the restart resuming from it. Prints the job id and its "
        "log files; the script and the resolved command (LOGS/JOBID.sh, LOGS/JOBID.yaml) are kept with the logs.")
    p.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    p.add_argument("--nodes", type=positive_int, default=1, help="nodes (train only, for DDP; default 1)")
    p.add_argument("--gpus-per-node", type=positive_int, help="GPUs per node, one training process each")
    p.add_argument("--cpus-per-task", type=positive_int, help="CPU cores per process (data-loader workers)")
    p.add_argument("--mem", help="memory per node, e.g. 32G")
    p.add_argument("--time", help="time limit (MM, HH:MM:SS, D-HH:MM); train checkpoints and requeues before it")
    p.add_argument("--array", type=positive_int, metavar="K", help="psf/redshift simulate as K array tasks")
    p.add_argument("--job-name", help="default: astrolearn-DOMAIN-VERB")
    p.add_argument("--logs", default="slurm-logs", help="directory of the job's logs, script and resolved "
                   "command (default: ./slurm-logs)")
    p.add_argument("--setup", action="append", default=[], metavar="SHELL_LINE",
                   help="shell line run on the node before the command, e.g. 'module load cuda' or "
                   "'source ~/venvs/astro/bin/activate' (repeatable)")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends and exit with its status")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the astrolearn command, e.g. -- psf train ...")
    p.set_defaults(func=cmd_submit)


def cmd_submit(args) -> int:
    from .. import __version__
    from ..cli import build_parser
    from ..errors import UserError
    from .slurm import Resources, requeue_signal_s, submit, wait

    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not argv:
        raise UserError("no command to submit: astrolearn submit [options] -- psf train ...")
    if argv[0] == "submit":
        raise UserError("astrolearn submit -- submit ...: a job cannot submit itself")
    # The command is parsed now: a mistake is reported here, not after waiting in the queue.
    command = build_parser().parse_args(argv)
    verb = (command.command, getattr(command, "verb", None))
    is_train = verb[1] == "train"
    if args.array and verb not in ARRAY_VERBS:
        raise UserError(f"--array: only psf simulate and redshift simulate run as array tasks, not {' '.join(argv[:2])}")
    if args.nodes > 1 and not is_train:
        raise UserError(f"--nodes {args.nodes}: only train runs across nodes (DDP), not {' '.join(argv[:2])}")
    if (args.gpus_per_node or 1) > 1 and not is_train:
        raise UserError(f"--gpus-per-node {args.gpus_per_node}: only train uses several GPUs, not {' '.join(argv[:2])}")
    resources = Resources(partition=args.partition, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                          cpus_per_task=args.cpus_per_task, mem=args.mem, time=args.time, array=args.array,
                          signal_s=requeue_signal_s(args.time) if is_train else None,
                          job_name=args.job_name or "-".join(["astrolearn", *filter(None, verb)]))
    record = {"command": ["astrolearn", *argv], "arguments": _plain_arguments(command),
              "astrolearn_version": __version__, "python": sys.executable, "setup": args.setup}
    if is_train and getattr(command, "config", None):
        record["training_config"] = _training_config(command)
    job = submit(argv, resources, args.logs, record, setup=args.setup)
    print(f"submitted job {job.job_id}: {' '.join(['astrolearn', *argv])}")
    print(f"logs: {job.logs[0]}" + (f" ... {job.logs[-1].name}" if len(job.logs) > 1 else ""))
    print(f"script and resolved command: {job.script}, {job.config}")
    if not args.wait:
        return 0
    status = wait(job.job_id, follow=job.logs if len(job.logs) == 1 else [])
    print(f"job {job.job_id}: exit status {status}")
    return status


def _plain_arguments(namespace) -> dict:
    """The parsed command's options, every default filled in (what the job will run with)."""
    return {k: v for k, v in vars(namespace).items() if k != "func" and (v is None or isinstance(v, (str, int, float,
                                                                                                     bool, list)))}


def _training_config(command) -> dict:
    """The training configuration a train command resolves (checked now rather than in the queue)."""
    from ..config import to_plain
    from ..training import resolve_config

    return to_plain(resolve_config(command.config, command.set))
