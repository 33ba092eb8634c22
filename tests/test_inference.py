"""Batch sizes chosen to a memory budget for inference (predict / embed / evaluate)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_models import build, make_atoms
from torch.utils._python_dispatch import TorchDispatchMode

from atomizer.atoms.batch import collate_atoms
from atomizer.errors import ConfigError
from atomizer.models.inference import (
    GENERIC_BYTES_PER_ATOM,
    inference_batch_size,
    inference_bytes_per_atom,
    inference_bytes_per_grid,
    inference_bytes_per_image,
)

MIB = 2**20


@pytest.fixture(scope="module")
def atomizer():
    return build("atomizer").eval()


def test_the_estimate_covers_every_per_atom_tensor_a_forward_pass_holds(atomizer):
    batch = collate_atoms([make_atoms(0), make_atoms(1)])
    n = batch.mask.numel()
    with torch.no_grad():
        parts = atomizer.tokenizer.parts(batch)
        source = atomizer.source(batch)
    inputs = (batch.value, batch.band, batch.x, batch.y, batch.mask)
    per_atom = [*inputs, *parts.per_atom.values()]
    per_atom += [index for _, index in parts.per_row.values()]
    unique = {t.untyped_storage().data_ptr(): t for t in per_atom if t.numel() >= n}
    held = sum(t.numel() * t.element_size() for t in unique.values())
    assert inference_bytes_per_atom(atomizer) >= held / n
    assert inference_bytes_per_atom(atomizer) <= 3 * held / n  # and is not wildly above it


@settings(max_examples=40, deadline=None)
@given(
    atoms=st.integers(0, 5_000_000),
    budget_mib=st.integers(1, 64_000),
    cap=st.one_of(st.none(), st.integers(1, 512)),
)
def test_batch_size_fits_the_budget(atomizer, atoms, budget_mib, cap):
    size = inference_batch_size(atomizer, atoms, budget_mib * MIB, max_batch_size=cap)
    per_image = atoms * inference_bytes_per_atom(atomizer) + inference_bytes_per_image(atomizer)
    once = inference_bytes_per_grid(atomizer, atoms)
    assert size >= 1
    if cap is not None:
        assert size <= cap
    if size > 1:  # a single image runs even when it alone exceeds the budget
        assert once + size * per_image <= budget_mib * MIB
    if cap is None or size < cap:
        assert once + (size + 1) * per_image > budget_mib * MIB  # the most that fit


def test_the_row_tables_are_counted_once_per_batch(atomizer):
    """The per-part tables the inference path gathers from grow with one image's side (distinct
    bands, x and y), not with the batch nor with the image's area."""
    cross = atomizer.core.block(0).cross.to_kv
    with torch.no_grad():
        source = atomizer.source(collate_atoms([make_atoms(0)] * 3))
        tables = source._fold_parts(cross)
    one_image = int(collate_atoms([make_atoms(0)]).mask.sum())
    rows = sum(t.shape[0] for t in tables)
    assert rows < one_image  # three images on one grid: bands + one image's x and y
    per_row = tables[0].shape[1] * tables[0].element_size()
    assert inference_bytes_per_grid(atomizer, one_image) >= rows * per_row
    assert inference_bytes_per_grid(atomizer, 2_000_000) < 2_000_000 * per_row / 10


def test_larger_images_get_smaller_batches(atomizer):
    sizes = [inference_batch_size(atomizer, n, 2048 * MIB) for n in (80_000, 500_000, 2_000_000)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_other_models_get_a_conservative_estimate_and_bad_budgets_are_errors(atomizer):
    assert inference_bytes_per_atom(torch.nn.Linear(2, 2)) == GENERIC_BYTES_PER_ATOM
    with pytest.raises(ConfigError, match="memory budget"):
        inference_batch_size(atomizer, 10, 0)


# --- the fused inference path: per-part rows gathered per tile -----------------------------------
def _kv_width(model) -> int:
    cross = model.core.block(0).cross
    return int(cross.to_kv.weight.shape[0])


@pytest.mark.parametrize("cpu_kernel", [True, False])
def test_inference_gathers_per_part_rows_and_equals_the_training_path(
    atomizer, monkeypatch, cpu_kernel
):
    """With gradients off the fused attention sums per-part rows per tile; with them on it reads
    the combined table. Same logits, over many tiles, padded and not."""
    from atomizer.models import fused

    monkeypatch.setattr(fused, "CPU_KERNEL", cpu_kernel)
    monkeypatch.setattr(fused, "TILE_ATOMS", 500)
    monkeypatch.setattr(fused, "MATH_TILE_ATOMS", 300)
    for seed, sides in enumerate([(40,), (40, 24, 33)]):
        batch = collate_atoms([make_atoms(seed + i, side=s) for i, s in enumerate(sides)])
        with torch.no_grad():
            new = atomizer(batch)
            source = atomizer.source(batch)
            atomizer.core(source)
        assert source._merged is None  # the combined table was never built
        old = atomizer(batch).detach()  # eval mode, gradients on: the combined-table path
        torch.testing.assert_close(new, old, atol=1e-5, rtol=1e-5)


class _LargestKeyValueTensor(TorchDispatchMode):
    """Records the most rows of any tensor created with ``width`` columns (keys and values)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width, self.rows = width, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[-1] == self.width:
                self.rows = max(self.rows, t.numel() // self.width)
        return out


def test_inference_holds_no_key_value_table_with_a_row_per_atom(atomizer, monkeypatch):
    from atomizer.models import fused

    monkeypatch.setattr(fused, "TILE_ATOMS", 256)
    batch = collate_atoms([make_atoms(0, side=48)])
    n_atoms = int(batch.mask.sum())
    with torch.no_grad(), _LargestKeyValueTensor(_kv_width(atomizer)) as inference:
        atomizer(batch)
    with _LargestKeyValueTensor(_kv_width(atomizer)) as training:  # the check can fail
        atomizer(batch)
    assert training.rows >= n_atoms  # one combined row per distinct (band, x, y): per atom
    assert inference.rows <= 2 * 256  # per-part tables (a few hundred rows) and one tile
