"""The one seeding scheme: named random streams, and capture / restore of every generator.

Every random number a run draws comes from a numpy seed sequence ``[seed, stream, *keys]``
(:func:`stream_rng`, :func:`stream_seed`), where ``stream`` is a named :class:`Stream` (sample
order, random crops, augmentation, ...) and ``keys`` say which epoch / step / sample / rank. Streams never
overlap, and each draw is a pure function of its keys, so a resumed run (or another rank) gets the
same numbers as an uninterrupted one. The global generators (python, numpy, torch: model
initialisation, dropout) are seeded once per run by :func:`seed_everything` from the
:attr:`Stream.GLOBAL` stream; a checkpoint stores :func:`capture_rng_state` so ``--resume``
continues them exactly, and :func:`isolated_rng` keeps a run from touching its caller's generators.

Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the data layer imports this module
    import torch


class Stream(IntEnum):
    """The independent random streams of a run. Values are part of every seed: never reuse one."""

    GLOBAL = 1  #: python / numpy / torch global generators (model init, dropout, atom dropping)
    SAMPLE_ORDER = 2  #: the order in which an epoch visits the samples; keys (epoch,)
    DATA_LOADER = 3  #: the DataLoader's own generator; keys (epoch,)
    SAMPLE_CROP = 4  #: random crops of a dataset sample; keys (epoch, index)
    AUGMENT = 5  #: pretraining view augmentation; keys (epoch, step, rank)
    CHIP_SAMPLING = 6  #: where pretraining chips are cut from a tile; keys (source index,)


def _entropy(seed: int, stream: Stream, keys: tuple[int, ...]) -> list[int]:
    values = [int(seed), int(stream), *(int(k) for k in keys)]
    if any(v < 0 for v in values):
        raise ValueError(f"seeds and stream keys are non-negative integers, got {values}")
    return values


def stream_rng(seed: int, stream: Stream, *keys: int) -> np.random.Generator:
    """A numpy generator for ``stream`` at ``keys`` (e.g. ``stream_rng(seed, Stream.SAMPLE_ORDER,
    epoch)``): a pure function of its arguments."""
    return np.random.default_rng(_entropy(seed, stream, keys))


def stream_seed(seed: int, stream: Stream, *keys: int) -> int:
    """A 63-bit integer seed for ``stream`` at ``keys`` (for torch generators)."""
    state = np.random.SeedSequence(_entropy(seed, stream, keys)).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


def seed_everything(seed: int, *, deterministic: bool = True, device_type: str = "cpu") -> None:
    """Seed python, numpy and torch (all devices); optionally ask torch for deterministic kernels.

    On CUDA, ``deterministic`` calls ``torch.use_deterministic_algorithms(True, warn_only=True)``
    (kernels without a deterministic implementation warn instead of failing) and sets the cuBLAS
    workspace variable that CUDA matmuls need to be reproducible. CPU kernels are deterministic
    already (for a fixed thread count); the switch is skipped there because turning it on imports
    torch's compiler stack (seconds of start-up) for nothing.
    """
    import torch

    global_seed = stream_seed(seed, Stream.GLOBAL)
    random.seed(global_seed)
    np.random.seed(global_seed % 2**32)
    torch.manual_seed(global_seed)
    if deterministic and device_type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits ``n`` samples: a function of (seed, epoch) only."""
    return stream_rng(seed, Stream.SAMPLE_ORDER, epoch).permutation(n)


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Run a block with the global generators it seeds, then give the caller back its own states
    (python, numpy, torch CPU and initialised CUDA devices)."""
    tensors, meta = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(tensors, meta)


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG state, split into tensors (for safetensors) and JSON-serialisable values."""
    import torch

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
    import torch

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
