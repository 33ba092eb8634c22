"""The reference code's approach, kept as a yardstick for the benchmark and the equivalence tests.

:class:`NaiveAtomizerModel` has exactly the parameters of :class:`AtomizerModel` (a checkpoint of
one loads into the other) but computes its input the way research prototypes of this model do:
every part of every atom's token is encoded per atom (Fourier features of each atom's x and y, the
spectral row of each atom's band, ...), concatenated into the full ``(S, N, D_token)`` matrix, and
projected by one ``Linear`` into the ``(S, N, atom_dim)`` embedding, from which each cross-attention
gathers its kept atoms. Same outputs as the factorised model (up to float rounding), much more time
and memory: never use it for anything but comparison.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from atomizer.atoms.batch import AtomBatch
from atomizer.models.atomizer_model import AtomizerModel
from atomizer.models.perceiver import DenseAtomSource


class NaiveAtomizerModel(AtomizerModel):
    """:class:`AtomizerModel` with a materialised token matrix and a dense first layer."""

    def tokens(self, batch: AtomBatch) -> Tensor:
        """The full ``(S, N, D_token)`` tokens, every part encoded per atom (as ``tokens()``)."""
        with torch.no_grad():
            return self.tokenizer.per_atom_tokens(batch)

    def dense_embedding(self, batch: AtomBatch) -> Tensor:
        """``Linear(tokens)``: the ``(S, N, atom_dim)`` embedding, computed the naive way."""
        order = tuple(self.projection.part_dims)  # token order
        return F.linear(
            self.tokens(batch), self.projection.dense_weight(order), self.projection.bias
        )

    def source(self, batch: AtomBatch) -> DenseAtomSource:  # type: ignore[override]
        return DenseAtomSource(self.dense_embedding(batch), batch.mask)
