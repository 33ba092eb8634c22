"""Multi-process training with torchrun and DistributedDataParallel (NCCL on GPU, gloo on CPU).

``torchrun --nproc-per-node 2 -m atomizer.cli.main train CONFIG`` (or several nodes with
``--nnodes`` and a rendezvous endpoint) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and
``MASTER_ADDR`` / ``MASTER_PORT``; :func:`from_environment` reads them and joins the process group.
Each global batch is split across the processes (rank r takes samples r, r + W, ...), the loss is
normalised by the global batch size, so the averaged gradient equals the single-process gradient on
the same global batch. Rank 0 alone writes checkpoints and logs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from atomizer.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()

    @classmethod
    def from_process_group(cls) -> DistContext:
        """Where this process stands in the process group its caller already joined (a single
        process when none is initialised)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        rank = dist.get_rank()
        local = int(os.environ.get("LOCAL_RANK", rank))
        return cls(rank=rank, world_size=dist.get_world_size(), local_rank=local)

    def wrap(
        self, model: nn.Module, device: torch.device, *, find_unused_parameters: bool = False
    ) -> nn.Module:
        """``model`` in DistributedDataParallel when running several processes, else unchanged."""
        if not self.is_distributed:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=find_unused_parameters
        )

    def gather_objects(self, obj: Any) -> list[Any]:
        """``obj`` from every rank, in rank order (just ``[obj]`` in a single process)."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather_tensor_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate along dim 0 the (possibly differently sized) ``tensor`` of every rank."""
        if not self.is_distributed:
            return tensor
        parts = self.gather_objects(tensor.cpu())
        return torch.cat(parts, dim=0)


def from_environment(
    environ: Mapping[str, str] | None = None, *, device_type: str = "cpu"
) -> DistContext:
    """The :class:`DistContext` torchrun describes in the environment; joins the process group.

    Without torchrun's variables (``WORLD_SIZE`` absent or 1) this is a single process and no group
    is created. The backend is NCCL for CUDA devices and gloo otherwise.
    """
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    try:
        rank, local_rank = int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"]))
    except (KeyError, ValueError):
        raise ConfigError(
            "WORLD_SIZE is set but RANK is missing or not an integer; launch with torchrun"
        ) from None
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        addr, port = env.get("MASTER_ADDR"), env.get("MASTER_PORT")
        init = f"tcp://{addr}:{port}" if addr and port else "env://"
        dist.init_process_group(backend=backend, init_method=init, rank=rank, world_size=world)
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (no-op in a single process)."""
    if ctx.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
