"""Memory-budgeted inference: how many images one forward pass may take.

In eval mode with gradients off the Atomizer never stores keys, values or attention scores per
atom: the fused cross-attention walks each image's atoms a tile at a time (see
:mod:`atomizer.models.fused`). What a forward pass holds per atom is the padded batch (value,
band, x, y, mask) and the tokenizer's per-atom parts (the value features and the row indices),
plus, briefly, the temporaries of the value encoder; per image, the latents of the transformer and
one tile of keys and values; and once per batch, the combined key/value row tables of the
factorised projection (one row of ``2 x inner`` floats per distinct (band, x, y) tuple in the
batch, per cross-attention module). Images of one size share their grid (positions are relative
to each image's centre), so the tables hold one image's rows whatever the batch size; for one very
large image they cost more than everything else (benchmarks/README.md: ~2.4 kB per atom at
2,000,000 atoms per image, against ~0.7 kB at 80,000).

:func:`inference_batch_size` is the one place the ``predict``, ``embed`` and ``evaluate`` commands
ask how many images fit.
"""

from __future__ import annotations

import math

from torch import nn

from atomizer.errors import ConfigError
from atomizer.models.fused import TILE_ATOMS

#: Bytes per atom of the padded :class:`~atomizer.atoms.AtomBatch`: float32 value, int64 band,
#: float32 x and y, bool mask.
BATCH_BYTES_PER_ATOM = 4 + 8 + 4 + 4 + 1
#: Bytes per atom of the row indices the tokenizer and the projection keep (x, y and combined row,
#: int64) and of the sort inside ``torch.unique`` that builds them.
INDEX_BYTES_PER_ATOM = 3 * 8 + 16
#: Copies of the per-atom value features alive at once while the value encoder runs (its sine and
#: cosine halves, then their concatenation).
VALUE_FEATURE_COPIES = 2
#: Bytes per atom assumed for models that are not Atomizers (no factorised path known here).
GENERIC_BYTES_PER_ATOM = 4096
#: Activations of the latent transformer per latent and latent channel (inputs, feed-forward
#: hidden layer, attention), in floats.
LATENT_FLOATS_PER_CHANNEL = 16
#: Copies of the combined row table alive at once per cross-attention module with its own weights
#: (the table, and the sum of per-part terms it is built from).
ROW_TABLE_COPIES = 2
#: Bytes of one float32.
FLOAT_BYTES = 4


def inference_bytes_per_atom(model: nn.Module) -> int:
    """Peak bytes per atom of a forward pass of ``model`` with gradients off."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or "value" not in getattr(tokenizer, "dims", {}):
        return GENERIC_BYTES_PER_ATOM
    value_dim = int(tokenizer.dims["value"])
    features = VALUE_FEATURE_COPIES * value_dim * FLOAT_BYTES
    return BATCH_BYTES_PER_ATOM + INDEX_BYTES_PER_ATOM + features


def inference_bytes_per_image(model: nn.Module) -> int:
    """Bytes per image that do not depend on its atoms: latents and one tile of keys/values."""
    config = getattr(model, "config", None)
    latents = getattr(config, "num_latents", 0) * getattr(config, "latent_dim", 0)
    heads = getattr(config, "cross_heads", 1) * getattr(config, "cross_dim_head", 0)
    tile = TILE_ATOMS * 2 * heads * 2  # keys and values, and their bf16 copies at most
    return (latents * LATENT_FLOATS_PER_CHANNEL + tile) * FLOAT_BYTES


def inference_bytes_per_grid(model: nn.Module, atoms_per_image: int) -> int:
    """Bytes of the combined row tables for a batch of images on one grid (held once per batch).

    Worst case: every atom of an image is a distinct (band, x, y) tuple.
    """
    config = getattr(model, "config", None)
    if getattr(model, "tokenizer", None) is None or config is None:
        return 0
    width = 2 * config.cross_heads * config.cross_dim_head
    modules = min(config.num_blocks, 2) if config.share_weights else config.num_blocks
    return atoms_per_image * width * FLOAT_BYTES * modules * ROW_TABLE_COPIES


def inference_batch_size(
    model: nn.Module,
    atoms_per_image: int,
    budget_bytes: int,
    *,
    max_batch_size: int | None = None,
) -> int:
    """The most images of ``atoms_per_image`` atoms whose forward pass fits ``budget_bytes``.

    At least 1: an image that alone exceeds the budget still runs, alone (failing would stop a
    whole prediction for one large window); a caller that must warn compares
    ``atoms_per_image * inference_bytes_per_atom(model)`` with its budget. ``max_batch_size``
    caps the result.
    """
    if atoms_per_image < 0 or budget_bytes <= 0:
        raise ConfigError(
            f"inference batch size: atoms_per_image {atoms_per_image} must be >= 0 and the "
            f"memory budget {budget_bytes} bytes > 0; give a positive budget"
        )
    per_image = atoms_per_image * inference_bytes_per_atom(model)
    per_image += inference_bytes_per_image(model)
    room = budget_bytes - inference_bytes_per_grid(model, atoms_per_image)
    size = max(1, math.floor(room / per_image))
    return size if max_batch_size is None else max(1, min(size, max_batch_size))
