"""`RunOptions`: how a per-item stage's items are run (workers, resume, retries, report, progress,
executor, shard, dry run, Ray settings), the same for every per-item stage.

Kept apart from `runner.py` so the command line can build its "run control" and "Ray" argument
groups from these fields without importing the runner, its executors or tqdm.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, MutableMapping

from ..errors import ConfigError
from ..options import opt
from .sharding import Shard, parse_shard, resolve_shard

EXECUTORS: tuple[str, ...] = ("local", "ray")
_RUN = "run control"
_RAY = "Ray (pip install 'kinetics-prep[ray]')"


@dataclass(frozen=True)
class RunOptions:
    """How a stage's items are run, the same for every per-item stage (each field's help text is
    its documentation). shard: "K/N" or a Shard; None: every item (keyword options turn None into
    the SLURM array task's shard, see `pop_run_options`)."""

    workers: int | None = opt(None, metavar="N", group=_RUN,
                              help="parallel worker processes (default: number of cores)")
    overwrite: bool = opt(False, group=_RUN,
                          help="redo items whose output already exists (default: skip them, i.e. resume)")
    retries: int = opt(0, metavar="N", group=_RUN, help="retry a failed item N more times (default: %(default)s)")
    report: Path | None = opt(None, metavar="PATH", group=_RUN,
                              help="JSON-lines report, one line per item (default: OUT/.kinetics_prep/STAGE_report.jsonl)")
    progress: bool = opt(True, flag="--no-progress", group=_RUN, help="no progress bar (e.g. in batch jobs)")
    dry_run: bool = opt(False, group=_RUN,
                        help="plan only: print what would be done (to do, already done, failed last time) "
                             "and the estimated output size; change nothing")
    shard: Shard | str | None = opt(
        None, metavar="K/N", group=_RUN,
        help="do only shard K of N (1 <= K <= N), a stable split by clip name; the report "
             "becomes STAGE_report.shard-K-of-N.jsonl (default: from SLURM_ARRAY_TASK_ID / "
             "SLURM_ARRAY_TASK_COUNT inside a SLURM job array; 1/1 turns that off)")
    executor: str = opt("local", choices=EXECUTORS, group=_RAY,
                        help="local: worker processes on this machine (default); ray: one Ray task per item")
    ray_address: str | None = opt(None, metavar="ADDR", group=_RAY,
                                  help="join a running Ray cluster: 'auto' or 'ray://HOST:10001' (default: start a "
                                       "local Ray instance with --workers CPUs)")
    ray_max_retries: int = opt(3, metavar="N", group=_RAY,
                               help="Ray reruns a task whose worker or node died up to N times (default: "
                                    "%(default)s); item errors are retried by --retries")
    ray_num_cpus: float | None = opt(None, metavar="X", group=_RAY,
                                     help="CPUs one task reserves (default: what the stage needs, 1 for CPU work)")
    ray_num_gpus: float | None = opt(None, metavar="X", group=_RAY,
                                     help="GPUs one task reserves, e.g. 0.5 to run two per GPU (default: the "
                                          "stage's, 1 for GPU work)")

    def __post_init__(self) -> None:
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 1):
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if self.retries < 0:
            raise ConfigError(f"--retries must be >= 0, got {self.retries}")
        if self.report is not None:
            object.__setattr__(self, "report", Path(self.report))
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.shard is not None:
            object.__setattr__(self, "shard", parse_shard(self.shard))
        if self.ray_max_retries < 0:
            raise ConfigError(f"--ray-max-retries must be >= 0, got {self.ray_max_retries}")
        for name in ("ray_num_cpus", "ray_num_gpus"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {v}")
        if self.executor != "ray":
            given = [n for n in ("ray_address", "ray_num_cpus", "ray_num_gpus") if getattr(self, n) is not None]
            if given:
                raise ConfigError(f"--{given[0].replace('_', '-')} needs --executor ray")

    def ray_resources(self, stage_resources: Mapping[str, float] | None) -> dict[str, float]:
        res = {"num_cpus": 1, **(stage_resources or {})}
        if self.ray_num_cpus is not None:
            res["num_cpus"] = self.ray_num_cpus
        if self.ray_num_gpus is not None:
            res["num_gpus"] = self.ray_num_gpus
        return res


RUN_OPTIONS: tuple[str, ...] = tuple(f.name for f in fields(RunOptions))


def pop_run_options(options: MutableMapping[str, Any]) -> RunOptions:
    """Take the runner's keyword options (the fields of RunOptions, or `run=RunOptions(...)`)
    out of a stage's keyword options and return them; the stage keeps the rest.
    Without a shard, the SLURM array task's shard applies (SLURM_ARRAY_TASK_ID / _COUNT / ...)."""
    given = options.pop("run", None)
    kwargs = {k: options.pop(k) for k in RUN_OPTIONS if k in options}
    if given is not None:
        if not isinstance(given, RunOptions):
            raise ConfigError(f"run must be a RunOptions, got {type(given).__name__}")
        run = replace(given, **kwargs) if kwargs else given
    else:
        run = RunOptions(**kwargs)
    if run.shard is None:
        # Inside a SLURM job array each task does its shard unless told otherwise ("1/1": all).
        run = replace(run, shard=resolve_shard(None))
    return run
