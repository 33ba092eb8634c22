"""A new part of the token is a registration: a test plugin adds two parts, nothing else changes.

The plugin registers, through the ordinary ``register_encoders`` hook, a per-scene part (the
sensor's orbit altitude) and a per-band part (the band's log GSD). A tokenizer config enables them
by name; the tokenizer, the Atomizer (factorised projection), the naive reference model and
training then use them without any edit, and the factorised model still equals the naive one.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_models import TINY_PERCEIVER, TINY_TOKENIZER, make_atoms
from training_toys import ToyAtomDataset

from atomizer import hookimpl
from atomizer.atoms.batch import collate_atoms
from atomizer.encoders import Tokenizer
from atomizer.errors import EncoderError
from atomizer.models import AtomizerModel, NaiveAtomizerModel
from atomizer.plugins.host import PluginHost
from atomizer.training.checkpoint import CheckpointContent
from atomizer.training.runner import load_model
from atomizer.training.trainer import Trainer, TrainSettings


class SensorAltitude:
    """Per-scene part: the orbit altitude (scene ``extra['altitude_km']``, else a constant)."""

    part = "sensor_altitude"
    role = "scene"
    out_dim = 2

    def __init__(self, *, altitude_km: float = 786.0) -> None:
        self.altitude_km = altitude_km

    def __call__(self, scenes, *, dtype, device):
        km = [float(s.extra.get("altitude_km", self.altitude_km)) for s in scenes]
        rows = [[k / 1000.0, math.log(k)] for k in km]
        return torch.tensor(rows, dtype=dtype, device=device).reshape(len(scenes), 2)


class BandGsd:
    """Per-band part: log GSD and its inverse, one row per band of the band table."""

    part = "band_gsd"
    role = "spectral"
    out_dim = 2

    def __call__(self, bands, *, dtype, device):
        gsd = torch.tensor([b.gsd_m for b in bands], dtype=dtype, device=device)
        return torch.stack([gsd.log(), 10.0 / gsd], dim=-1)


class NewPartsPlugin:
    @hookimpl
    def register_encoders(self, register):
        register("sensor_altitude", SensorAltitude)
        register("band_gsd", BandGsd)


TOKENIZER = {
    **TINY_TOKENIZER,
    "sensor_altitude": {"name": "sensor_altitude", "altitude_km": 705.0},
    "band_gsd": {"name": "band_gsd"},
}


@pytest.fixture
def host(tmp_path) -> PluginHost:
    return PluginHost(
        load_entrypoints=False,
        environ={"XDG_CONFIG_HOME": str(tmp_path / "xdg")},
        extra_plugins=(NewPartsPlugin(),),
    )


def _atoms(seed: int, altitude_km: float | None = None):
    atoms = make_atoms(seed)
    if altitude_km is not None:
        atoms.scene.extra["altitude_km"] = altitude_km
    return atoms


def test_the_tokenizer_takes_the_new_parts_in_token_order(host):
    tok = Tokenizer.from_config(TOKENIZER, host=host)
    assert list(tok.dims) == ["value", "position", "spectral", "sensor_altitude", "band_gsd"]
    atoms = _atoms(0)
    tokens = tok.tokens(atoms)
    alt = tokens[:, -4:-2]
    assert torch.allclose(alt, torch.tensor([0.705, math.log(705.0)]).expand_as(alt))
    gsd = torch.tensor([b.gsd_m for b in atoms.bands])[torch.from_numpy(atoms.band).long()]
    assert torch.allclose(tokens[:, -2], gsd.log()) and torch.allclose(tokens[:, -1], 10.0 / gsd)
    batch = collate_atoms([atoms, _atoms(1, altitude_km=500.0)])
    parts = tok.parts(batch)
    assert parts.per_sample["sensor_altitude"].shape == (2, 2)
    assert parts.table("band_gsd").shape == (len(batch.bands), 2)
    assert torch.allclose(parts.assemble()[0, : len(atoms)], tokens, atol=1e-6)


def test_factorised_atomizer_equals_the_naive_one_with_the_new_parts(host):
    model = AtomizerModel(
        num_classes=3, atom_dim=16, tokenizer=TOKENIZER, host=host, **TINY_PERCEIVER
    )
    assert set(model.projection.part_dims) >= {"sensor_altitude", "band_gsd"}
    naive = NaiveAtomizerModel(config=model.config, host=host)
    naive.load_state_dict(model.state_dict())
    batch = collate_atoms([_atoms(0), _atoms(1, altitude_km=500.0), _atoms(2)])
    for m in (model, naive):
        m.train()
        torch.manual_seed(7)
        m(batch).square().sum().backward()
    for (name, p), q in zip(model.named_parameters(), naive.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=name)
    assert model.projection.parts["sensor_altitude"].weight.grad.abs().sum() > 0
    model.eval(), naive.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(batch), naive(batch), atol=1e-5, rtol=1e-5)


def test_training_with_the_new_parts_and_reloading_the_checkpoint(host, tmp_path):
    def factory():
        return AtomizerModel(
            num_classes=3, atom_dim=16, tokenizer=TOKENIZER, host=host, **TINY_PERCEIVER
        )

    settings = TrainSettings(
        task="multiclass", num_classes=3, epochs=1, batch_size=8, lr=1e-2, device="cpu"
    )
    before = factory().projection.parts["band_gsd"].weight.detach().clone()
    result = Trainer(
        model_factory=factory,
        train_set=ToyAtomDataset(16),
        val_sets={},
        settings=settings,
        run_dir=tmp_path / "run",
        content=CheckpointContent(
            model_name="atomizer", model_params=factory().config.model_dump(mode="json")
        ),
        tensorboard=False,
    ).fit()
    assert result.finished and math.isfinite(result.history[-1]["train_loss"])
    assert not torch.equal(result.model.projection.parts["band_gsd"].weight, before)
    reloaded, _ = load_model(result.checkpoint, host=host)
    batch = collate_atoms([ToyAtomDataset(2)[i][0] for i in range(2)])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(batch), result.model.eval()(batch))


def test_a_part_needs_an_encoder_that_declares_it(host):
    wrong_key = {**TINY_TOKENIZER, "altitude": {"name": "sensor_altitude"}}
    with pytest.raises(EncoderError, match="altitude: not a token part .*part 'sensor_altitude'"):
        Tokenizer.from_config(wrong_key, host=host)

    class NoRole(BandGsd):
        part, role = "odd", "per_pixel"

    class Plugin:
        @hookimpl
        def register_encoders(self, register):
            register("odd", NoRole)

    odd_host = PluginHost(load_entrypoints=False, environ={}, extra_plugins=(Plugin(),))
    with pytest.raises(EncoderError, match="odd: encoder 'odd' adds a part but declares role"):
        Tokenizer.from_config({**TINY_TOKENIZER, "odd": {"name": "odd"}}, host=odd_host)
