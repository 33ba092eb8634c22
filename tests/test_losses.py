"""SatMIP / SimCLR losses against direct small-batch computations written as explicit loops."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from atomizer.pretrain.losses import (
    INIT_TEMPERATURE,
    MAX_LOGIT_SCALE,
    LearnableTemperature,
    PretrainObjective,
    gather_with_grad,
    info_nce,
    nt_xent,
    parse_method_label,
)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def info_nce_loops(img: torch.Tensor, meta: torch.Tensor, scale: float) -> float:
    """CLIP's loss, one anchor at a time, in float64."""
    n = img.shape[0]
    a = [_unit(img[i].double()) for i in range(n)]
    b = [_unit(meta[i].double()) for i in range(n)]
    total_i = total_m = 0.0
    for i in range(n):
        num = math.exp(scale * float(a[i] @ b[i]))
        den_i = sum(math.exp(scale * float(a[i] @ b[j])) for j in range(n))
        den_m = sum(math.exp(scale * float(b[i] @ a[j])) for j in range(n))
        total_i += -math.log(num / den_i)
        total_m += -math.log(num / den_m)
    return (total_i / n + total_m / n) / 2


def nt_xent_loops(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """SimCLR's NT-Xent, one anchor at a time: positive = the other view, others = all but self."""
    n = z1.shape[0]
    z = [_unit(v.double()) for v in torch.cat([z1, z2])]
    total = 0.0
    for k in range(2 * n):
        pos = k + n if k < n else k - n
        num = math.exp(float(z[k] @ z[pos]) / tau)
        den = sum(math.exp(float(z[k] @ z[j]) / tau) for j in range(2 * n) if j != k)
        total += -math.log(num / den)
    return total / (2 * n)


@pytest.mark.parametrize("n,d,scale", [(2, 3, 1.0), (5, 4, 14.3), (7, 8, 50.0)])
def test_info_nce_matches_loops(n: int, d: int, scale: float) -> None:
    g = torch.Generator().manual_seed(n * 100 + d)
    img, meta = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    got = info_nce(img.double(), meta.double(), scale)
    assert got.item() == pytest.approx(info_nce_loops(img, meta, scale), rel=1e-9)


@pytest.mark.parametrize("n,d,tau", [(1, 3, 0.5), (4, 5, 0.1), (6, 8, 0.07)])
def test_nt_xent_matches_loops(n: int, d: int, tau: float) -> None:
    g = torch.Generator().manual_seed(n * 10 + d)
    z1, z2 = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    got = nt_xent(z1.double(), z2.double(), tau)
    assert got.item() == pytest.approx(nt_xent_loops(z1, z2, tau), rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(0, 2**31 - 1),
    st.floats(0.1, 10.0),
)
def test_info_nce_invariances(n: int, seed: int, positive_scale: float) -> None:
    """Unchanged by rescaling embeddings (they are normalised) and by permuting pairs jointly."""
    g = torch.Generator().manual_seed(seed)
    img, meta = torch.randn(n, 4, generator=g).double(), torch.randn(n, 4, generator=g).double()
    base = info_nce(img, meta, 10.0)
    perm = torch.randperm(n, generator=g)
    assert info_nce(img * positive_scale, meta, 10.0).item() == pytest.approx(base.item(), rel=1e-9)
    assert info_nce(img[perm], meta[perm], 10.0).item() == pytest.approx(base.item(), rel=1e-9)
    # swapping the modalities leaves the symmetric loss unchanged
    assert info_nce(meta, img, 10.0).item() == pytest.approx(base.item(), rel=1e-9)


def test_info_nce_rewards_alignment() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 16, generator=g)
    aligned = info_nce(x, x, 100.0)
    shuffled = info_nce(x, x[torch.roll(torch.arange(8), 1)], 100.0)
    assert aligned.item() < 0.05 < shuffled.item()
    assert nt_xent(x, x, 0.05).item() < nt_xent(x, x.flip(0), 0.05).item()


def test_learnable_temperature_init_clamp_and_gradient() -> None:
    t = LearnableTemperature()
    assert t().item() == pytest.approx(1 / INIT_TEMPERATURE, rel=1e-6)
    with torch.no_grad():
        t.log_scale.fill_(10.0)
    assert t().item() == pytest.approx(MAX_LOGIT_SCALE, rel=1e-6)
    with torch.no_grad():
        t.log_scale.fill_(math.log(5.0))
    g = torch.Generator().manual_seed(1)
    img, meta = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    info_nce(img, meta, t()).backward()
    assert t.log_scale.grad is not None and t.log_scale.grad.abs().item() > 0


def test_objective_views_and_total() -> None:
    assert parse_method_label("simclr").n_views == 2
    assert parse_method_label("satmip").n_views == 1
    coupled, uncoupled = (
        parse_method_label("satmips-coupled"),
        parse_method_label("satmips-uncoupled"),
    )
    assert (coupled.n_views, coupled.satmip_view) == (2, 0)
    assert (uncoupled.n_views, uncoupled.satmip_view) == (3, 2)
    assert parse_method_label("SatMIPS") == coupled
    g = torch.Generator().manual_seed(2)
    z = [torch.randn(5, 4, generator=g) for _ in range(4)]
    obj = PretrainObjective("satmips", coupled=False, lambda_simclr=0.5, simclr_temperature=0.2)
    parts = obj(simclr=(z[0], z[1]), satmip=(z[2], z[3]), logit_scale=7.0)
    expect = info_nce(z[2], z[3], 7.0) + 0.5 * nt_xent(z[0], z[1], 0.2)
    assert parts.total.item() == pytest.approx(expect.item(), rel=1e-6)
    assert set(parts.as_floats()) == {"loss", "satmip", "simclr"}
    with pytest.raises(ValueError, match="needs simclr"):
        PretrainObjective("simclr")(satmip=(z[0], z[1]), logit_scale=1.0)
    with pytest.raises(ValueError, match="unknown method"):
        parse_method_label("mocov3")


def test_gather_without_process_group_is_identity() -> None:
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    with pytest.raises(ValueError):
        info_nce(torch.randn(3, 2), torch.randn(4, 2), 1.0)
