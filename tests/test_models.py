"""Models: every registered variant (shapes, gradients, masks, configs, heads) and the Atomizer's
invariances (atom order, padding, dropping only in training, shared weights, chunked and fused
attention, factorised projection == Linear on the concatenated tokens)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomizer.atoms.atomset import AtomSet
from atomizer.atoms.batch import collate_atoms
from atomizer.errors import ConfigError, PluginError
from atomizer.models import (
    AtomizerConfig,
    AtomizerModel,
    ModelFactory,
    NaiveAtomizerModel,
    PerceiverBaselineConfig,
    ResNetConfig,
    ViTConfig,
    build_model,
    predict_proba,
)
from atomizer.models import fused as fused_mod
from atomizer.models import perceiver as perceiver_mod
from atomizer.models.any_sensor import AnySensorConfig
from atomizer.models.attention import chunked_attention, key_padding_sdpa
from atomizer.models.fused import FactorisedCrossAttention
from atomizer.models.perceiver import drop_atoms
from atomizer.models.plugin import builtin_variants
from atomizer.models.projection import RowTerm, _merge_rows
from atomizer.sensors.spec import Band, SensorSpec

NUM_CLASSES = 5
TOL = 1e-5
TINY_TOKENIZER = {
    "value": {"name": "fourier_value", "num_bands": 4, "max_freq": 8.0},
    "position": {"name": "position", "num_bands": 4, "max_freq": 16.0, "reference_m": 60.0},
    "spectral": {"name": "spectral"},
}
TINY_PERCEIVER = {
    "num_latents": 4,
    "latent_dim": 32,
    "cross_dim_head": 8,
    "latent_heads": 2,
    "latent_dim_head": 8,
}
LAYOUT = {
    "bands": [
        {"name": "B02", "common_name": "blue", "center_wavelength_nm": 490.0},
        {"name": "B03", "common_name": "green", "center_wavelength_nm": 560.0},
        {
            "name": "B04",
            "common_name": "red",
            "center_wavelength_nm": 665.0,
            "mean": 0.2,
            "std": 0.1,
        },
        {"name": "B8A", "common_name": "nir08", "center_wavelength_nm": 865.0},
        {"name": "B12", "common_name": "swir22", "center_wavelength_nm": 2190.0},
    ],
    "size_px": 8,
}
TINY_VIT = {"dim": 32, "depth": 1, "heads": 2, "dim_head": 8, "patch_size": 4}
#: Tiny overrides per config class (most specific first); variants keep their depth.
TINY: list[tuple[type, dict]] = [
    (
        AnySensorConfig,
        {**TINY_VIT, "raster": {"size_px": 8}},
    ),
    (AtomizerConfig, {**TINY_PERCEIVER, "atom_dim": 16, "tokenizer": TINY_TOKENIZER}),
    (PerceiverBaselineConfig, {**TINY_PERCEIVER, "fourier_bands": 3, "layout": LAYOUT}),
    (
        ViTConfig,
        {"dim": 32, "depth": 1, "heads": 2, "dim_head": 8, "patch_size": 4, "layout": LAYOUT},
    ),
    (
        ResNetConfig,
        {"stem_width": 8, "widths": [8, 16], "blocks_per_stage": [1, 1], "layout": LAYOUT},
    ),
]
VARIANTS = sorted(builtin_variants())
ATOMIZER_VARIANTS = [n for n in VARIANTS if builtin_variants()[n].config_cls is AtomizerConfig]

SPEC = SensorSpec(
    id="testsat",
    name="Test satellite",
    sources=["tests"],
    bands=[
        Band(name="B02", common_name="blue", center_wavelength_nm=490.0, fwhm_nm=65.0, gsd_m=10.0),
        Band(name="B03", common_name="green", center_wavelength_nm=560.0, fwhm_nm=35.0, gsd_m=10.0),
        Band(name="B04", common_name="red", center_wavelength_nm=665.0, fwhm_nm=30.0, gsd_m=10.0),
        Band(name="B8A", common_name="nir08", center_wavelength_nm=865.0, fwhm_nm=20.0, gsd_m=20.0),
    ],
)


def tiny_params(name: str, **extra) -> dict:
    factory = builtin_variants()[name]
    for cls, params in TINY:
        if issubclass(factory.config_cls, cls):
            return {"num_classes": NUM_CLASSES, **params, **extra}
    raise AssertionError(f"no tiny parameters for {factory.config_cls.__name__}; add a row to TINY")


def make_atoms(seed: int, side: int = 8) -> AtomSet:
    """About 200 atoms: three 10 m bands on a side x side grid, one 20 m band on half of it."""
    rng = np.random.default_rng(seed)
    ten = AtomSet.from_array(
        rng.uniform(0, 0.5, (3, side, side)), SPEC, bands=["B02", "B03", "B04"]
    )
    twenty = AtomSet.from_array(rng.uniform(0, 0.5, (1, side // 2, side // 2)), SPEC, bands=["B8A"])
    return AtomSet.concat([ten, twenty])


@pytest.fixture(scope="module")
def batch():
    return collate_atoms([make_atoms(0), make_atoms(1, side=6), make_atoms(2)])


def build(name: str, **extra):
    torch.manual_seed(0)
    return build_model(name, tiny_params(name, **extra))


# --- every variant ------------------------------------------------------------------------------
def test_builtin_variants_are_registered(host):
    assert set(VARIANTS) <= set(host.models.names())
    for required in ("atomizer", "resnet", "vit", "scalemae", "perceiver"):
        assert required in host.models
    assert all(isinstance(host.models.get(n), ModelFactory) for n in VARIANTS)


@pytest.mark.parametrize("name", VARIANTS)
def test_forward_backward_shapes_and_gradients(name, batch):
    model = build(name).train()
    logits = model(batch)
    assert logits.shape == (batch.batch_size, NUM_CLASSES)
    logits.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        features = model.encode(batch)
    assert features.shape == (batch.batch_size, model.feature_dim)
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("name", VARIANTS)
def test_config_rebuilds_the_same_model(name, batch):
    model = build(name).eval()
    dumped = json.loads(json.dumps(model.config.model_dump(mode="json")))
    rebuilt = build_model(name, dumped).eval()
    assert rebuilt.config == model.config
    # checkpoints are safetensors: no two state-dict entries may share memory
    state = safetensors.torch.load(safetensors.torch.save(model.state_dict()))
    rebuilt.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(batch), model(batch))


@pytest.mark.parametrize("name", VARIANTS)
def test_padding_atoms_do_not_change_the_output(name, batch):
    model = build(name).eval()
    sets = [make_atoms(0), make_atoms(1, side=6), make_atoms(2)]
    padded = collate_atoms(sets, pad_to_multiple=64)
    assert padded.mask.shape[1] > batch.mask.shape[1]
    padded.value[~padded.mask] = 123.0  # garbage under the mask must not leak in
    padded.x[~padded.mask] = -5e3
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(batch), atol=TOL, rtol=TOL)
        # the second sample is the shortest: alone it has no padding at all
        alone = model(collate_atoms([sets[1]]))
        torch.testing.assert_close(model(batch)[1], alone[0], atol=TOL, rtol=TOL)


@pytest.mark.parametrize("name", VARIANTS)
def test_eval_is_deterministic_and_dropout_free(name, batch):
    params = tiny_params(name)
    if "dropout" in builtin_variants()[name].config_cls.model_fields:
        params["dropout"] = 0.5
    torch.manual_seed(0)
    model = build_model(name, params).eval()
    with torch.no_grad():
        first, second = model(batch), model(batch)
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    if "dropout" in params:
        model.train()
        with torch.no_grad():
            assert not torch.allclose(model(batch), model(batch))


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("task", ["multilabel", "multiclass"])
def test_heads_train_with_their_loss(name, task, batch):
    model = build(name, task=task).train()
    logits = model(batch)
    if task == "multilabel":
        target = torch.tensor(
            [[1, 0, 1, 0, 0], [0, 0, 0, 0, 1], [1, 1, 0, 0, 0]], dtype=torch.float32
        )
        loss = F.binary_cross_entropy_with_logits(logits, target)
        probs = predict_proba(logits, task)
        assert ((probs > 0) & (probs < 1)).all()
    else:
        loss = F.cross_entropy(logits, torch.tensor([0, 3, 4]))
        torch.testing.assert_close(predict_proba(logits, task).sum(-1), torch.ones(3))
    loss.backward()
    assert math.isfinite(float(loss.detach()))
    assert model.config.task == task


@pytest.mark.parametrize("name", VARIANTS)
def test_bad_configs_are_one_clear_error(name):
    with pytest.raises(ConfigError, match="no_such_key"):
        build_model(name, {**tiny_params(name), "no_such_key": 1})
    with pytest.raises(ConfigError, match="num_classes"):
        build_model(name, {**tiny_params(name), "num_classes": 0})


def test_unknown_model_name_names_the_closest():
    with pytest.raises(PluginError, match="atomizer"):
        build_model("atomiser")


def test_empty_atom_set_gives_finite_outputs(batch):
    model = build("atomizer").eval()
    empty = make_atoms(0).take(np.zeros(len(make_atoms(0)), dtype=bool))
    with torch.no_grad():
        out = model(collate_atoms([empty, make_atoms(1)]))
    assert torch.isfinite(out).all()


# --- the Atomizer -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def atomizer():
    torch.manual_seed(0)
    return AtomizerModel(**tiny_params("atomizer", num_blocks=3)).eval()


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1))
def test_atomizer_is_invariant_to_atom_order(atomizer, seed):
    atoms = make_atoms(3)
    perm = np.random.default_rng(seed).permutation(len(atoms))
    with torch.no_grad():
        a = atomizer(collate_atoms([atoms]))
        b = atomizer(collate_atoms([atoms.take(perm)]))
    torch.testing.assert_close(a, b, atol=TOL, rtol=TOL)


def test_atom_dropping_happens_in_training_only(batch, monkeypatch):
    calls = []

    def spy(mask, p, **kw):
        index, kept = drop_atoms(mask, p, **kw)
        calls.append((p, kept.sum(dim=1).tolist()))
        return index, kept

    monkeypatch.setattr(perceiver_mod, "drop_atoms", spy)
    model = build("atomizer", num_blocks=3, atom_drop_p=0.5)
    model.eval()
    with torch.no_grad():
        model(batch)
    assert calls == []
    model.train()
    model(batch)
    n = batch.mask.sum(dim=1).tolist()
    assert calls == [(0.5, [k - k // 2 for k in n])] * 3  # before EACH cross-attention
    # without dropping (and without dropout) training mode computes exactly the eval output
    still = build("atomizer", atom_drop_p=0.0)
    with torch.no_grad():
        torch.testing.assert_close(still.train()(batch), still.eval()(batch), atol=TOL, rtol=TOL)


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(0, 30), min_size=1, max_size=4),
    p=st.floats(0.0, 0.95),
    seed=st.integers(0, 1000),
)
def test_drop_atoms_keeps_the_right_real_atoms(counts, p, seed):
    n_max = max(max(counts), 1) + 3
    mask = torch.zeros(len(counts), n_max, dtype=torch.bool)
    for i, c in enumerate(counts):
        mask[i, torch.randperm(n_max, generator=torch.Generator().manual_seed(seed + i))[:c]] = True
    index, kept = drop_atoms(mask, p, generator=torch.Generator().manual_seed(seed))
    for i, c in enumerate(counts):
        chosen = index[i][kept[i]]
        assert len(chosen) == c - math.floor(p * c)
        assert mask[i, chosen].all()
        assert len(set(chosen.tolist())) == len(chosen)
    assert (index.diff(dim=1) > 0).all()  # ascending: memory-friendly gathers


def test_weights_are_shared_across_blocks_after_the_first():
    shared = build("atomizer", num_blocks=4, self_per_block=2)
    core = shared.core
    assert core.block(1) is core.block(2) is core.block(3)
    assert core.block(0) is not core.block(1)
    assert core.block(3).cross.to_kv.weight is core.block(1).cross.to_kv.weight
    assert core.block(3).layers[1].ff.net[0].weight is core.block(1).layers[1].ff.net[0].weight
    separate = build("atomizer", num_blocks=4, self_per_block=2, share_weights=False)
    assert len({id(separate.core.block(i)) for i in range(4)}) == 4
    per_block = sum(p.numel() for p in core.block(1).parameters())
    n_shared = sum(p.numel() for p in shared.parameters())
    assert sum(p.numel() for p in separate.parameters()) == n_shared + 2 * per_block
    names = list(shared.state_dict())
    assert len(names) == len(set(names)) and not any("blocks.2." in n for n in names)


def test_chunked_cross_attention_equals_unchunked(batch):
    model = build("atomizer", num_blocks=2).eval()
    chunked = build("atomizer", num_blocks=2, chunk_size=7).eval()
    chunked.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(chunked(batch), model(batch), atol=TOL, rtol=TOL)


@settings(max_examples=25, deadline=None)
@given(
    S=st.integers(1, 3),
    heads=st.integers(1, 2),
    n=st.integers(1, 40),
    chunk=st.integers(1, 50),
    seed=st.integers(0, 1000),
)
def test_chunked_attention_matches_sdpa(S, heads, n, chunk, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(S, heads, m, 4, generator=g) for m in (3, n, n))
    mask = torch.rand(S, n, generator=g) < 0.7
    mask[0] = False  # a sample with no atom gives zeros on both paths
    out = chunked_attention(q, lambda a, b: (k[:, :, a:b], v[:, :, a:b]), mask, chunk_size=chunk)
    torch.testing.assert_close(out, key_padding_sdpa(q, k, v, mask), atol=TOL, rtol=TOL)
    assert (out[0] == 0).all()


@pytest.mark.parametrize("kernel", [True, False])  # PyTorch's CPU flash kernel, or the math
@pytest.mark.parametrize("tile", [2, 1024])
def test_fused_cross_attention_gradients_are_exact(tile, kernel, monkeypatch):
    monkeypatch.setattr(fused_mod, "CPU_KERNEL", kernel)
    monkeypatch.setattr(fused_mod, "TILE_ATOMS", tile)  # several tiles per sample, or one
    monkeypatch.setattr(fused_mod, "MATH_TILE_ATOMS", tile)
    g = torch.Generator().manual_seed(0)
    S, h, L, d, K, P, U, Dv = 3, 2, 3, 2, 5, 20, 6, 3
    dt = torch.float64
    q = torch.randn(S, h, L, d, generator=g, dtype=dt, requires_grad=True)
    rows = torch.randint(0, U, (S * K,), generator=g)
    idx = torch.randint(0, P, (S * K,), generator=g)
    phi = torch.randn(P, Dv, generator=g, dtype=dt)
    table, a, per_sample = (
        torch.randn(*shape, generator=g, dtype=dt, requires_grad=True)
        for shape in ((U, 2 * h * d), (2 * h * d, Dv), (S, 2 * h * d))
    )
    mask = torch.rand(S, K, generator=g) < 0.7
    mask[1] = False
    mask[2, :2] = torch.tensor([True, False])  # with tile 2: a partly masked tile...
    mask[0, 2:4] = False  # ...and a fully masked one between valid tiles

    def fn(q, table, a, per_sample):
        return FactorisedCrossAttention.apply(q, rows, idx, phi, table, a, per_sample, mask)

    assert torch.autograd.gradcheck(fn, (q, table, a, per_sample))
    kv = (table[rows] + phi[idx] @ a.T).view(S, K, 2 * h * d) + per_sample[:, None]
    k, v = (t.reshape(S, K, h, d).transpose(1, 2) for t in kv.chunk(2, dim=-1))
    torch.testing.assert_close(fn(q, table, a, per_sample), key_padding_sdpa(q, k, v, mask))


@pytest.mark.parametrize("fused", [True, False])
def test_factorised_model_matches_the_naive_one(batch, fused):
    """Same parameters, same outputs and gradients, training mode with atom dropping included."""
    model = build("atomizer", num_blocks=3, fused_attention=fused)
    naive = NaiveAtomizerModel(config=model.config)
    naive.load_state_dict(model.state_dict())
    for m in (model, naive):
        m.train()
        torch.manual_seed(7)
        m(batch).square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), naive.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)
    model.eval(), naive.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch), naive(batch), atol=TOL, rtol=TOL)


def test_factorised_projection_equals_linear_on_concatenated_tokens(batch, atomizer):
    sets = [make_atoms(0), make_atoms(1, side=6), make_atoms(2)]
    proj = atomizer.projection
    order = ("value", "position_x", "position_y", "spectral")
    linear = torch.nn.Linear(sum(proj.part_dims.values()), proj.out_dim)
    with torch.no_grad():
        linear.weight.copy_(proj.dense_weight(order))
        linear.bias.copy_(proj.bias)
        embedded = atomizer.embed_atoms(batch)
        for i, atoms in enumerate(sets):
            tokens = atomizer.tokenizer.tokens(atoms)  # (N, D): the full concatenation
            torch.testing.assert_close(
                embedded[i, : len(atoms)], linear(tokens), atol=TOL, rtol=TOL
            )
        naive_tokens = NaiveAtomizerModel(config=atomizer.config).tokens(batch)
        torch.testing.assert_close(
            naive_tokens[0, : len(sets[0])], atomizer.tokenizer.tokens(sets[0])
        )


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    seed=st.integers(0, 1000),
    limit=st.sampled_from([2**62, 10]),
)
def test_row_merge_recovers_every_index(sizes, seed, limit):
    from atomizer.models import projection

    g = torch.Generator().manual_seed(seed)
    terms = {
        f"t{i}": RowTerm(torch.zeros(r, 1), torch.randint(0, r, (2, 7), generator=g))
        for i, r in enumerate(sizes)
    }
    old = projection._KEY_LIMIT
    projection._KEY_LIMIT = limit
    try:
        index, rows = _merge_rows(terms)
    finally:
        projection._KEY_LIMIT = old
    for name, term in terms.items():
        assert torch.equal(rows[name][index], term.index)
    assert int(index.max()) + 1 == len(torch.unique(index))  # no unused combined rows


# --- the any-sensor baselines (DOFA, Panopticon, Copernicus-FM) -----------------------------------
ANY_SENSOR_VARIANTS = [
    n for n in VARIANTS if issubclass(builtin_variants()[n].config_cls, AnySensorConfig)
]


def test_any_sensor_variants_are_registered():
    assert {"dofa", "panopticon", "copernicusfm"} <= set(ANY_SENSOR_VARIANTS)


@pytest.mark.parametrize("name", ANY_SENSOR_VARIANTS)
def test_any_sensor_models_read_only_the_bands_present(name):
    """Channels = the input's own bands (no zero-filled slots); a sample's output does not depend
    on the band sets of the other samples of its batch; every band changes the output."""
    model = build(name).eval()
    rgb = make_atoms(5).select_bands(["B02", "B03", "B04"])
    full = make_atoms(6)
    raster, channels = model.raster(collate_atoms([rgb]))
    assert [b.name for b in channels] == ["B02", "B03", "B04"]
    assert raster.values.shape[1] == 3 and raster.present.all()
    with torch.no_grad():
        mixed = model(collate_atoms([rgb, full]))
        torch.testing.assert_close(mixed[0], model(collate_atoms([rgb]))[0], atol=TOL, rtol=TOL)
        torch.testing.assert_close(mixed[1], model(collate_atoms([full]))[0], atol=TOL, rtol=TOL)
        three = model(collate_atoms([full.select_bands(["B02", "B03", "B04"])]))
        assert not torch.allclose(three, model(collate_atoms([full])), atol=1e-4)
