"""bf16 autocast (``precision: bf16``) against the float32 reference path.

Stated tolerances (bf16 keeps 8 bits of mantissa, a relative rounding of 2^-9 ~ 0.2% per
operation): logits within 2% of the largest fp32 logit, the loss within 1%, the gradient within 3%
(relative L2 norm), and the training-loss curve of a few optimiser steps within 2% epoch by epoch.
Under autocast the folded key/value tables, the keys and values and the softmax statistics of the
factorised cross-attention stay float32; only its matrix products run in bf16.
"""

from __future__ import annotations

import pytest
import torch
from test_models import build, make_atoms
from test_training_config import BASE
from training_toys import ToyAtomDataset

from atomizer.atoms.batch import collate_atoms
from atomizer.errors import ConfigError
from atomizer.models import NaiveAtomizerModel, build_model
from atomizer.models import fused as fused_mod
from atomizer.models.attention import latent_sdpa
from atomizer.models.fused import fused_cross_attention
from atomizer.training.config import ExperimentConfig
from atomizer.training.evaluate import autocast
from atomizer.training.trainer import Trainer, TrainSettings

LOGIT_TOL = 0.02  # of the largest |logit|
LOSS_RTOL = 0.01
GRAD_RTOL = 0.03
CURVE_RTOL = 0.02
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def batch():
    return collate_atoms([make_atoms(0), make_atoms(1, side=6), make_atoms(2)])


def _model(kind: str):
    model = build("atomizer", num_blocks=3, self_per_block=2, fused_attention=kind != "unfused")
    if kind == "naive":
        naive = NaiveAtomizerModel(config=model.config)
        naive.load_state_dict(model.state_dict())
        model = naive
    return model


def _loss_and_grad(model, batch, precision: str):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)  # the same atoms dropped in both precisions
    with autocast(CPU, precision):
        logits = model(batch)
    loss = logits.float().square().mean()
    loss.backward()
    return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("kind", ["fused", "unfused", "naive"])
def test_bf16_logits_loss_and_gradients_stay_close_to_fp32(batch, kind):
    model = _model(kind).eval()
    with torch.no_grad():
        ref = model(batch)
        with autocast(CPU, "bf16"):
            low = model(batch)
    assert low.dtype == torch.bfloat16  # autocast really ran
    assert (low.float() - ref).abs().max() <= LOGIT_TOL * ref.abs().max()
    assert not torch.equal(low.float(), ref)

    model.train()
    loss_ref, grad_ref = _loss_and_grad(model, batch, "fp32")
    loss_low, grad_low = _loss_and_grad(model, batch, "bf16")
    assert loss_low == pytest.approx(float(loss_ref), rel=LOSS_RTOL)
    assert float((grad_low - grad_ref).norm() / grad_ref.norm()) <= GRAD_RTOL
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())  # master weights fp32


@pytest.mark.parametrize("kernel", [True, False])
def test_fused_attention_under_autocast(kernel, monkeypatch):
    """bf16 queries in; keys, values and the merge of tiles in float32; the CPU kernel multiplies
    in bf16 (the hand-written math path stays float32 throughout); gradient back in bf16."""
    monkeypatch.setattr(fused_mod, "CPU_KERNEL", kernel)
    monkeypatch.setattr(fused_mod, "TILE_ATOMS", 4)
    monkeypatch.setattr(fused_mod, "MATH_TILE_ATOMS", 4)
    g = torch.Generator().manual_seed(0)
    S, h, L, d, K, P, U, Dv = 2, 2, 3, 4, 9, 18, 5, 3
    q = torch.randn(S, h, L, d, generator=g).bfloat16().requires_grad_()
    rows = torch.randint(0, U, (S * K,), generator=g)
    idx = torch.randint(0, P, (S * K,), generator=g)
    phi = torch.randn(P, Dv, generator=g)
    table = torch.randn(U, 2 * h * d, generator=g, requires_grad=True)
    a = torch.randn(2 * h * d, Dv, generator=g, requires_grad=True)
    mask = torch.ones(S, K, dtype=torch.bool)
    mask[1, 5] = False
    args = (rows, idx, phi, table, a, None, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused_cross_attention(q, *args)
    assert out.dtype == torch.float32
    exact = fused_cross_attention(q.detach().float(), *args)
    if kernel:
        torch.testing.assert_close(out, exact, rtol=0.03, atol=0.03)
        assert not torch.equal(out, exact)
    else:
        torch.testing.assert_close(out, exact, rtol=0, atol=0)
    out.sum().backward()
    assert q.grad.dtype == torch.bfloat16 and table.grad.dtype == torch.float32
    assert torch.isfinite(table.grad).all() and torch.isfinite(a.grad).all()


def test_autocast_contexts():
    assert not torch.is_autocast_enabled("cpu")
    for precision, on in (("fp32", False), ("auto", False), ("bf16", True)):
        with autocast(CPU, precision):
            assert torch.is_autocast_enabled("cpu") is on
            if on:
                assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with pytest.raises(ConfigError, match="precision 'fp16' is unknown"):
        autocast(CPU, "fp16")


def _trainer(run_dir, precision: str) -> Trainer:
    settings = TrainSettings(
        task="multiclass",
        num_classes=3,
        epochs=3,
        batch_size=6,
        lr=1e-2,
        device="cpu",
        precision=precision,
        metrics=("overall_accuracy",),
    )
    return Trainer(
        model_factory=lambda: build_model(
            "atomizer",
            {
                "num_classes": 3,
                "task": "multiclass",
                "num_latents": 4,
                "latent_dim": 32,
                "cross_dim_head": 8,
                "latent_heads": 2,
                "latent_dim_head": 8,
                "atom_dim": 16,
                "atom_drop_p": 0.25,
            },
        ),
        train_set=ToyAtomDataset(24),
        val_sets={"val": ToyAtomDataset(6, seed=1)},
        settings=settings,
        run_dir=run_dir,
        tensorboard=False,
    )


def test_a_few_bf16_training_steps_follow_the_fp32_run(tmp_path):
    """Three epochs of four steps: the epoch losses agree (the weights are not compared one by
    one: AdamW normalises each gradient entry, so entries whose gradient is near zero move by
    about the learning rate in either precision, in a direction bf16 rounding can flip)."""
    runs = {p: _trainer(tmp_path / p, p).fit() for p in ("fp32", "bf16")}
    losses = {p: [row["train_loss"] for row in r.history] for p, r in runs.items()}
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=CURVE_RTOL)
    assert losses["bf16"] != losses["fp32"]  # bf16 really ran
    assert all(w.dtype == torch.float32 for w in runs["bf16"].model.parameters())


def test_precision_config_and_the_older_amp_key():
    assert ExperimentConfig.model_validate(BASE).precision == "auto"
    assert ExperimentConfig.model_validate({**BASE, "amp": True}).precision == "auto"
    assert ExperimentConfig.model_validate({**BASE, "amp": False}).precision == "fp32"
    with pytest.raises(ValueError, match="drop the older amp key"):
        ExperimentConfig.model_validate({**BASE, "amp": True, "precision": "bf16"})
    with pytest.raises(ValueError, match="Input should be 'auto', 'fp32' or 'bf16'"):
        ExperimentConfig.model_validate({**BASE, "precision": "fp16"})
    # fingerprints of runs written with amp (before precision existed) are unchanged
    auto = ExperimentConfig.model_validate(BASE)
    assert auto.fingerprint() == "8f89857cc48962d6"
    assert auto.fingerprint(auto.models[0]) == "de9a75ccf6336fee"
    fp32 = ExperimentConfig.model_validate({**BASE, "precision": "fp32"})
    assert fp32.fingerprint() == "7806ec0e4e4ef1a7"
    bf16 = ExperimentConfig.model_validate({**BASE, "precision": "bf16"})
    assert len({auto.fingerprint(), fp32.fingerprint(), bf16.fingerprint()}) == 3


def test_latent_attention_runs_in_float32_on_cpu_under_autocast():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4, generator=g).bfloat16() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = latent_sdpa(q, k, v)
    assert out.dtype == torch.float32
    exact = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float())
    torch.testing.assert_close(out, exact, rtol=0, atol=0)
