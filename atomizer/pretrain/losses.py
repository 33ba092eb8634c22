"""Contrastive losses of SatMIP / SatMIPS, correct under DistributedDataParallel.

- :func:`info_nce`: the symmetric CLIP loss between image and metadata embeddings,
  ``(CE(s * I M^T, diag) + CE(s * M I^T, diag)) / 2`` with ``s`` = :class:`LearnableTemperature`
  (initialised at ``1 / 0.07``, clamped at :data:`MAX_LOGIT_SCALE`).
- :func:`nt_xent`: SimCLR's NT-Xent between two views (2N samples, each one's positive is its other
  view, the 2N - 2 others are negatives).
- :class:`PretrainObjective`: SimCLR, SatMIP, or SatMIPS = SatMIP + lambda * SimCLR, coupled (the
  SatMIP image view is one of the two SimCLR views: 2 image-encoder passes) or uncoupled (a third
  view: 3 passes).

Under ``torch.distributed`` every embedding is all-gathered *with gradient* before the loss
(:func:`gather_with_grad`), so every process computes the loss of the whole global batch: its value
equals the single-process loss on the concatenated batch, and after DDP averages the gradients they
equal the single-process gradients too (each process back-propagates ``world_size`` identical
copies of the loss into its own samples; DDP divides by ``world_size``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from atomizer.training.distributed import DistContext

#: CLIP's initial temperature (logit scale = 1 / 0.07) and its clamp (scale <= 100).
INIT_TEMPERATURE = 0.07
MAX_LOGIT_SCALE = 100.0
#: SimCLR's temperature (fixed), and SatMIPS's weight of the SimCLR term (paper: lambda = 1).
SIMCLR_TEMPERATURE = 0.1
SATMIPS_LAMBDA = 1.0

Method = Literal["simclr", "satmip", "satmips"]
METHODS: tuple[str, ...] = ("simclr", "satmip", "satmips")


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums every rank's gradient of this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        where = DistContext.from_process_group()
        rank, world = where.rank, where.world_size
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = rank, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (``(n, ...)``, same ``n`` on every rank) from all ranks, in rank order.

    Gradients flow back to every rank's own slice, summed over the ranks that used it (each rank
    computes the loss of the whole gathered batch). Outside a process group this returns ``x``.
    """
    if not DistContext.from_process_group().is_distributed:
        return x
    return _GatherWithGrad.apply(x)


class LearnableTemperature(nn.Module):
    """CLIP's learnable logit scale ``s = exp(t)``, ``t`` initialised at ``log(1 / 0.07)``."""

    def __init__(
        self, init_temperature: float = INIT_TEMPERATURE, max_logit_scale: float = MAX_LOGIT_SCALE
    ) -> None:
        super().__init__()
        if not 0 < init_temperature:
            raise ValueError(f"init_temperature must be > 0, got {init_temperature}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_log_scale = math.log(max_logit_scale)

    def forward(self) -> torch.Tensor:
        """The logit scale, ``exp(clamp(t, max=log(max_logit_scale)))`` (a 0-d tensor)."""
        return self.log_scale.clamp(max=self.max_log_scale).exp()


def info_nce(
    image: torch.Tensor,
    metadata: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    gather: bool = True,
) -> torch.Tensor:
    """Symmetric InfoNCE between row-paired ``image`` and ``metadata`` embeddings (``(n, d)`` each).

    Embeddings are L2-normalised here. With ``gather`` they are first all-gathered across ranks.
    """
    if image.shape != metadata.shape:
        raise ValueError(f"image {tuple(image.shape)} and metadata {tuple(metadata.shape)} differ")
    img = F.normalize(image, dim=-1)
    meta = F.normalize(metadata, dim=-1)
    if gather:
        img, meta = gather_with_grad(img), gather_with_grad(meta)
    logits = logit_scale * img @ meta.t()
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = SIMCLR_TEMPERATURE,
    *,
    gather: bool = True,
) -> torch.Tensor:
    """SimCLR's NT-Xent between two views ``z1``, ``z2`` (``(n, d)``; row i of each is one image).

    Over the ``2n`` normalised embeddings, sample ``k``'s positive is its other view and the
    denominator sums over the ``2n - 1`` others; the loss is the mean over all ``2n`` anchors.
    """
    if z1.shape != z2.shape:
        raise ValueError(f"views of different shapes {tuple(z1.shape)} and {tuple(z2.shape)}")
    a, b = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    if gather:
        a, b = gather_with_grad(a), gather_with_grad(b)
    n = a.shape[0]
    z = torch.cat([a, b], dim=0)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


@dataclass
class LossParts:
    """The total loss and its terms (``None`` where a method has no such term)."""

    total: torch.Tensor
    satmip: torch.Tensor | None = None
    simclr: torch.Tensor | None = None

    def as_floats(self) -> dict[str, float]:
        out = {"loss": float(self.total.detach())}
        if self.satmip is not None:
            out["satmip"] = float(self.satmip.detach())
        if self.simclr is not None:
            out["simclr"] = float(self.simclr.detach())
        return out


@dataclass(frozen=True)
class PretrainObjective:
    """Which loss to train with, and how many augmented image views it needs.

    ``simclr``: 2 views. ``satmip``: 1 view. ``satmips`` coupled: 2 views (the SatMIP image
    embedding is computed from view 0, which SimCLR also uses); uncoupled: 3 views (SatMIP gets
    view 2 of its own).
    """

    method: Method
    coupled: bool = True
    lambda_simclr: float = SATMIPS_LAMBDA
    simclr_temperature: float = SIMCLR_TEMPERATURE

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; use one of {', '.join(METHODS)}")

    @property
    def uses_metadata(self) -> bool:
        return self.method in ("satmip", "satmips")

    @property
    def uses_simclr(self) -> bool:
        return self.method in ("simclr", "satmips")

    @property
    def n_views(self) -> int:
        if self.method == "satmip":
            return 1
        if self.method == "simclr":
            return 2
        return 2 if self.coupled else 3

    @property
    def satmip_view(self) -> int:
        """Index of the view whose image embedding SatMIP aligns with the metadata."""
        return 2 if (self.method == "satmips" and not self.coupled) else 0

    @property
    def label(self) -> str:
        if self.method == "satmips":
            return f"satmips-{'coupled' if self.coupled else 'uncoupled'}"
        return self.method

    def __call__(
        self,
        *,
        simclr: tuple[torch.Tensor, torch.Tensor] | None = None,
        satmip: tuple[torch.Tensor, torch.Tensor] | None = None,
        logit_scale: torch.Tensor | float | None = None,
        gather: bool = True,
    ) -> LossParts:
        """The loss from projected embeddings: ``simclr=(z_view0, z_view1)``,
        ``satmip=(image, metadata)`` with ``logit_scale``."""
        l_mip = l_clr = None
        if self.uses_metadata:
            if satmip is None or logit_scale is None:
                raise ValueError(f"{self.label} needs satmip=(image, metadata) and logit_scale")
            l_mip = info_nce(*satmip, logit_scale, gather=gather)
        if self.uses_simclr:
            if simclr is None:
                raise ValueError(f"{self.label} needs simclr=(view0, view1)")
            l_clr = nt_xent(*simclr, self.simclr_temperature, gather=gather)
        if self.method == "simclr":
            total = l_clr
        elif self.method == "satmip":
            total = l_mip
        else:
            total = l_mip + self.lambda_simclr * l_clr
        return LossParts(total=total, satmip=l_mip, simclr=l_clr)


def parse_method_label(label: str) -> PretrainObjective:
    """The objective of a label: ``simclr``, ``satmip``, ``satmips`` (coupled), ``satmips-coupled``
    or ``satmips-uncoupled``."""
    key = label.strip().lower()
    table = {
        "simclr": PretrainObjective("simclr"),
        "satmip": PretrainObjective("satmip"),
        "satmips": PretrainObjective("satmips", coupled=True),
        "satmips-coupled": PretrainObjective("satmips", coupled=True),
        "satmips-uncoupled": PretrainObjective("satmips", coupled=False),
    }
    if key not in table:
        raise ValueError(f"unknown method {label!r}; use one of {', '.join(table)}")
    return table[key]
