"""The Atomizer (paper section 3.2): token encoders + a Perceiver over the atoms of any sensor.

Pipeline for an :class:`~atomizer.atoms.AtomBatch` (S samples padded to N atoms):

1. :class:`~atomizer.encoders.Tokenizer` gives the factorised token parts: value features per atom,
   spectral features per band, position features per unique x and per unique y, time / location
   per scene (:class:`~atomizer.encoders.TokenParts`).
2. The first layer is linear (:class:`~atomizer.models.projection.FactorisedProjection`,
   ``atom_dim`` wide); each cross-attention's keys and values are a linear map of it, so both are
   computed term by term from the parts, for the kept atoms only: the ``(S, N, D_token)`` token
   matrix and the ``(S, N, atom_dim)`` embedding are never built.
3. :class:`~atomizer.models.perceiver.PerceiverCore`: latents, cross-attention blocks with atom
   dropping in training, shared weights after the first block, attention pooling, linear head.

``forward(batch)`` gives logits ``(S, num_classes)``; ``encode(batch)`` the pooled embedding
``(S, latent_dim)`` before the head. No dropout and no atom dropping in eval mode; with
``chunk_size`` set and gradients off, each cross-attention walks the atoms in chunks (online
softmax) so inference memory stays bounded however large the input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from atomizer.atoms.batch import AtomBatch
from atomizer.encoders import Tokenizer, TokenParts
from atomizer.evaluation.metrics import probabilities as predict_proba  # noqa: F401 (re-export)
from atomizer.models.config import AtomizerConfig, make_config
from atomizer.models.perceiver import PerceiverCore
from atomizer.models.projection import (
    AtomFactors,
    FactorisedAtomSource,
    FactorisedProjection,
    RowTerm,
)

def factors_from_parts(parts: TokenParts) -> AtomFactors:
    """:class:`TokenParts` as generic :class:`AtomFactors` (no copy; token order preserved)."""
    return AtomFactors(
        mask=parts.mask,
        per_atom=dict(parts.per_atom),
        per_row={name: RowTerm(table, index) for name, (table, index) in parts.per_row.items()},
        per_sample=dict(parts.per_sample),
        order=tuple(parts.dims),
    )


class AtomizerModel(nn.Module):
    """The Atomizer. Build with keywords (``AtomizerModel(num_classes=19, num_latents=64)``) or
    ``config=`` (an :class:`AtomizerConfig` or a mapping); ``host`` resolves encoder names."""

    config_cls = AtomizerConfig

    def __init__(
        self,
        *,
        config: AtomizerConfig | Mapping[str, Any] | None = None,
        host: Any = None,
        **params: Any,
    ) -> None:
        super().__init__()
        cfg = make_config(AtomizerConfig, config, params)
        self.tokenizer = Tokenizer.from_config(cfg.tokenizer or None, host=host)
        # store the resolved tokenizer config, so that the model's config alone rebuilds it
        self.config: AtomizerConfig = cfg.model_copy(
            update={"tokenizer": self.tokenizer.config.to_dict()}
        )
        self.projection = FactorisedProjection(self.tokenizer.factor_dims, cfg.atom_dim)
        self.core = PerceiverCore(cfg, atom_dim=cfg.atom_dim)

    @property
    def feature_dim(self) -> int:
        """Width of :meth:`encode`'s output."""
        return self.config.latent_dim

    # --- atoms -> keys / values ------------------------------------------------------------------
    def factors(self, batch: AtomBatch) -> AtomFactors:
        """The factorised token parts of ``batch`` (no gradient flows into fixed encoders)."""
        with torch.no_grad():
            parts = self.tokenizer.parts(batch)
        return factors_from_parts(parts)

    def source(self, batch: AtomBatch) -> FactorisedAtomSource:
        return self.projection.source(self.factors(batch))

    def embed_atoms(self, batch: AtomBatch) -> Tensor:
        """The materialised atom embeddings ``(S, N, atom_dim)`` (reference and tests only)."""
        return self.projection.embed(self.factors(batch))

    # --- outputs ---------------------------------------------------------------------------------
    def latent_states(self, batch: AtomBatch) -> Tensor:
        """Latents after the last block ``(S, num_latents, latent_dim)``."""
        return self.core.latent_states(self.source(batch))

    def encode(self, batch: AtomBatch) -> Tensor:
        """Pooled embedding ``(S, latent_dim)`` (before the head)."""
        return self.core.encode(self.source(batch))

    def forward(self, batch: AtomBatch) -> Tensor:
        """Logits ``(S, num_classes)``."""
        return self.core(self.source(batch))
