"""Deterministic seeding and capture / restore of every random number generator.

Nothing here runs at import time: a run calls :func:`seed_everything` once, and a checkpoint stores
:func:`capture_rng_state` so that ``--resume`` continues with exactly the same random streams. Data
order never depends on those global streams: :func:`epoch_permutation` is a pure function of
(seed, epoch), so a resumed run visits the samples in the same order as an uninterrupted one.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

#: Mixed into the seed of the per-epoch shuffling generator (a stream apart from model init).
_SHUFFLE_STREAM = 0x5EED_0F_DA7A


def seed_everything(seed: int, *, deterministic: bool = True, device_type: str = "cpu") -> None:
    """Seed python, numpy and torch (all devices); optionally ask torch for deterministic kernels.

    On CUDA, ``deterministic`` calls ``torch.use_deterministic_algorithms(True, warn_only=True)``
    (kernels without a deterministic implementation warn instead of failing) and sets the cuBLAS
    workspace variable that CUDA matmuls need to be reproducible. CPU kernels are deterministic
    already (for a fixed thread count); the switch is skipped there because turning it on imports
    torch's compiler stack (seconds of start-up) for nothing.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic and device_type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order in which epoch ``epoch`` visits ``n`` samples: a function of (seed, epoch) only."""
    gen = torch.Generator()
    gen.manual_seed((seed * 1_000_003 + epoch * 7_919 + _SHUFFLE_STREAM) % 2**63)
    return torch.randperm(n, generator=gen)


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG state, split into tensors (for safetensors) and JSON-serialisable values."""
    tensors: dict[str, torch.Tensor] = {"torch_cpu": torch.get_rng_state().clone()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state.clone()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64))
    version, internal, gauss_next = random.getstate()
    meta = {
        "numpy": {
            "kind": kind,
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }
    return tensors, meta


def restore_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured (CUDA states only when CUDA is present)."""
    torch.set_rng_state(tensors["torch_cpu"].to(torch.uint8))
    cuda = sorted(k for k in tensors if k.startswith("torch_cuda_"))
    if cuda and torch.cuda.is_available():
        n = min(len(cuda), torch.cuda.device_count())
        torch.cuda.set_rng_state_all([tensors[f"torch_cuda_{i}"].to(torch.uint8) for i in range(n)])
    npm = meta["numpy"]
    np.random.set_state(
        (
            npm["kind"],
            tensors["numpy_keys"].numpy().astype(np.uint32),
            npm["pos"],
            npm["has_gauss"],
            npm["cached"],
        )
    )
    py = meta["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
