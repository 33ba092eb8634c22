"""Training-memory accounting that works on CPU as well as on GPU.

On CUDA the peak is ``torch.cuda.max_memory_allocated``. On CPU there is no allocator counter, so
:class:`SavedTensorTracker` counts what dominates training memory and differs between methods: the
tensors autograd saves for the backward pass (activations). Through
``torch.autograd.graph.saved_tensors_hooks`` it records each saved tensor's storage once (views and
repeats of one storage are counted once; parameters are excluded), drops it when autograd releases
it, and keeps the peak of the live total. :func:`state_bytes` adds parameters, gradients and
optimizer state, so ``state + peak activations`` is the training footprint of the model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


class _Packed:
    """What autograd stores instead of a saved tensor: the tensor, plus a release callback."""

    __slots__ = ("tensor", "_tracker", "_key")

    def __init__(self, tensor: torch.Tensor, tracker: SavedTensorTracker, key: int | None) -> None:
        self.tensor = tensor
        self._tracker = tracker
        self._key = key

    def __del__(self) -> None:
        if self._key is not None:
            self._tracker._release(self._key)


class SavedTensorTracker:
    """Peak bytes of tensors saved for backward while the tracker is active (see module doc)."""

    def __init__(self, exclude: nn.Module | None = None) -> None:
        self._exclude = (
            {p.untyped_storage().data_ptr() for p in exclude.parameters()} if exclude else set()
        )
        self._refs: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self.live_bytes = 0
        self.peak_bytes = 0

    def _pack(self, tensor: torch.Tensor) -> _Packed:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key == 0 or key in self._exclude:
            return _Packed(tensor, self, None)
        if key not in self._refs:
            self._refs[key] = 0
            self._sizes[key] = storage.nbytes()
            self.live_bytes += self._sizes[key]
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self._refs[key] += 1
        return _Packed(tensor, self, key)

    @staticmethod
    def _unpack(packed: _Packed) -> torch.Tensor:
        return packed.tensor

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live_bytes -= self._sizes.pop(key)

    @contextlib.contextmanager
    def track(self) -> Iterator[SavedTensorTracker]:
        """Count tensors saved inside this block (forward and backward both belong inside)."""
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield self


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, int]:
    """Bytes of parameters, of their gradients (one per trainable parameter) and optimizer state."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    opt = 0
    if optimizer is not None:
        for state in optimizer.state.values():
            opt += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return {"params": params, "grads": grads, "optimizer": opt}


@dataclass(frozen=True)
class MemoryReport:
    """The training footprint of one run, in bytes."""

    params: int
    grads: int
    optimizer: int
    peak_activations: int
    cuda_peak: int | None = None

    @property
    def total(self) -> int:
        """CUDA's peak when measured, else parameters + gradients + optimizer + peak activations."""
        if self.cuda_peak is not None:
            return self.cuda_peak
        return self.params + self.grads + self.optimizer + self.peak_activations

    def to_json(self) -> dict[str, int | None]:
        return {
            "params": self.params,
            "grads": self.grads,
            "optimizer": self.optimizer,
            "peak_activations": self.peak_activations,
            "cuda_peak": self.cuda_peak,
            "total": self.total,
        }
