"""Batch sizes chosen to a memory budget for inference (predict / embed / evaluate)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_models import build, make_atoms

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
    per_atom = [*inputs, *parts.per_atom.values(), source.row_index]
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
    """Their size grows with one image's atoms (distinct positions), not with the batch."""
    with torch.no_grad():
        source = atomizer.source(collate_atoms([make_atoms(0)] * 3))
        table = source._prepare(atomizer.core.block(0).cross.to_kv).table
    one_image = int(collate_atoms([make_atoms(0)]).mask.sum())
    assert table.shape[0] <= one_image  # three images on one grid: one image's rows
    per_row = table.shape[1] * table.element_size()
    assert inference_bytes_per_grid(atomizer, one_image) >= one_image * per_row


def test_larger_images_get_smaller_batches(atomizer):
    sizes = [inference_batch_size(atomizer, n, 2048 * MIB) for n in (80_000, 500_000, 2_000_000)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]


def test_other_models_get_a_conservative_estimate_and_bad_budgets_are_errors(atomizer):
    assert inference_bytes_per_atom(torch.nn.Linear(2, 2)) == GENERIC_BYTES_PER_ATOM
    with pytest.raises(ConfigError, match="memory budget"):
        inference_batch_size(atomizer, 10, 0)
