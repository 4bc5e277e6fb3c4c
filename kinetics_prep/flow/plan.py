"""Where flow runs: which engine on which devices, services or an engine per worker, and each
worker's feed. Decided here, from plain values, so that the stage that asks for flow
(extract-frames) never counts GPUs, sets torch's threads or asks which executor it runs under.

    plan = plan_flow("tvl1", backend="auto", device="auto", params={}, gpus=None,
                     batch_size=None, flow_service=False)             # in the parent, once
    services = flow_services(plan, params, workers, executor)        # None or FlowServices
    feed = open_feed(plan, params, slot=..., threads=..., executor=..., services=...)  # per worker
    with feed.session(clip) as session: session.put(pairs); session.drain()
    feed.close()                                                      # the worker's teardown

Nothing here imports the run layer: the executor is a name ("serial", "pool", "ray") and the
services are the handles the runner hands each worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ConfigError

__all__ = ["FlowPlan", "plan_flow", "cuda_device_count", "flow_services", "open_feed", "engine_workers",
           "flow_resources"]


@dataclass(frozen=True)
class FlowPlan:
    """Which engine runs where; decided once in the parent and recorded in every clip's metadata."""

    name: str
    backend: str
    devices: tuple[str, ...]  # the devices flow runs on: ("cpu",) or one "cuda:N" per GPU used
    params: dict[str, Any]
    batch_size: int
    # Flow services (one process per device, batching pairs of every worker) instead of an
    # engine per worker: always on CUDA, on the CPU when asked (--flow-service).
    service: bool = False
    factory: Any = None  # builds the engine on a device (benchmarks, tests); None: get_engine

    @property
    def on_cuda(self) -> bool:
        return self.devices[0].startswith("cuda")

    def rate(self, workers: int, cpu_s: float, flow_s: float) -> tuple[float, str]:
        """Pairs per second of a run with `workers` workers, from one worker's seconds per pair
        of decoding/encoding (`cpu_s`) and of flow (`flow_s`): workers side by side, or with
        services on GPUs the slower of the workers' decoding/encoding and the services' flow;
        and a note on how it was reckoned ("" when plain)."""
        if self.service and self.on_cuda:
            rate = min(workers / max(cpu_s, 1e-9), len(self.devices) / max(flow_s, 1e-9))
            return rate, f"; flow on {len(self.devices)} service(s), timed one pair at a time"
        return workers * (1.0 / max(cpu_s + flow_s, 1e-9)), ""


def plan_flow(flow_type: str, *, backend: str, device: str, params: Mapping[str, Any],
              gpus: tuple[int, ...] | None, batch_size: int | None, flow_service: bool) -> FlowPlan:
    """Validate the flow settings and resolve backend and devices, before any work starts
    (nothing is built here: each worker, or each service, builds its engine once). `gpus`: the
    GPUs to use (None: `device`'s, or every visible one); `batch_size` None: 32 on CUDA, 8 on
    the CPU."""
    from .. import flow as flowlib

    backend, resolved, engine_params = flowlib.resolve_engine(flow_type, backend=backend, device=device, **params)
    if resolved.startswith("cuda"):
        if gpus is not None:
            chosen = gpus
        elif device.startswith("cuda:"):
            chosen = (int(device.split(":")[1]),)
        else:
            chosen = tuple(range(cuda_device_count()))
        devices = tuple(f"cuda:{g}" for g in chosen)
        batch = batch_size or 32
    else:
        if gpus:
            raise ConfigError("--gpus needs a GPU backend on CUDA (--flow-backend triton or torch, --device cuda)")
        devices = (resolved,)
        batch = batch_size or 8
    service = devices[0].startswith("cuda") or flow_service
    return FlowPlan(flow_type, backend, devices, engine_params, batch, service)


def cuda_device_count() -> int:
    """Visible CUDA GPUs; 0 without PyTorch or CUDA."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def flow_services(plan: FlowPlan, params: Mapping[str, Any], workers: int, executor: str) -> Any:
    """The run's flow services for `workers` worker slots, a context manager to enter before the
    workers start (a `FlowServices`), or None: each worker has its own engine (the plan asks
    for none, or Ray, which keeps one engine per GPU task). `params`: the engine's options as
    given (the services build it from them)."""
    if not plan.service or executor == "ray":
        return None
    from .service import FlowServices, ServiceSpec

    spec = ServiceSpec(plan.name, plan.backend, plan.devices, dict(params), plan.batch_size,
                       factory=plan.factory, meta_params=dict(plan.params))
    return FlowServices(spec, workers)


def open_feed(plan: FlowPlan, params: Mapping[str, Any], *, slot: int, threads: int, executor: str,
              services: Any = None) -> Any:
    """One worker's feed (its `session(clip)` takes a clip's pairs; `close()` when the worker
    stops): the run's flow services when it has them (`services`: their handles), otherwise
    this worker's own engine on its device: GPU `slot % GPUs` in a local pool; under Ray, the
    task's own GPU (Ray sets CUDA_VISIBLE_DEVICES, so it is cuda:0). `threads`: the cores this
    worker may keep busy (a torch engine on the CPU uses that many threads)."""
    if services is not None:
        return services.feed(slot)
    from .. import flow as flowlib
    from .service import LocalFeed

    if executor == "ray" and plan.on_cuda:
        device = "cuda:0"
    else:
        device = plan.devices[slot % len(plan.devices)]
    if plan.backend in ("torch", "triton") and device == "cpu":
        import torch

        # Like cv2.setNumThreads(1): processes fill the cores, not oversubscribed threads.
        torch.set_num_threads(threads)
    engine = (plan.factory(device) if plan.factory is not None else
              flowlib.get_engine(plan.name, backend=plan.backend, device=device, **params))
    return LocalFeed(engine)


def engine_workers(plan: FlowPlan) -> int | None:
    """Workers a run needs when nobody says (None: one per core). With flow services the workers
    only decode and encode; an engine of its own on each GPU (no services) means one worker per
    GPU."""
    return len(plan.devices) if plan.on_cuda and not plan.service else None


def flow_resources(plan: FlowPlan, executor: str) -> dict[str, float]:
    """Resources of one item's task: under Ray, GPU flow takes a GPU per task (Ray gives it
    through CUDA_VISIBLE_DEVICES: see `open_feed`)."""
    return {"num_cpus": 1, "num_gpus": 1} if plan.on_cuda and executor == "ray" else {"num_cpus": 1}
