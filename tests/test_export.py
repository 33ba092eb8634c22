"""The portable inference graph: the exported program and the ONNX file match the eager model."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch
from training_toys import BANDS, ToyAtomDataset

from atomizer.atoms import AtomSet, SceneMeta, collate_atoms
from atomizer.models.export import ExportError, export_onnx, export_program, graph_inputs
from atomizer.models.registry import build_model

ATOL = 1e-5


def atom_sets(n: int, *, seed: int = 0, bands=BANDS):
    """``n`` dated and placed toy AtomSets of 3 x 3 pixels, cut to different sizes."""
    data = ToyAtomDataset(n, size=3, seed=seed, bands=bands)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        whole = data[i][0]
        atoms = whole.take(np.arange(int(rng.integers(3, len(whole) + 1))))
        when = dt.datetime(2020, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1000)))
        scene = SceneMeta(sensor_id="toy", datetime=when, lon=float(rng.uniform(-180, 180)),
                          lat=float(rng.uniform(-80, 80)))
        out.append(AtomSet(atoms.value, atoms.band, atoms.x, atoms.y, atoms.bands, scene))
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from atomizer.plugins.host import PluginHost

    xdg = tmp_path_factory.mktemp("xdg")
    host = PluginHost(load_entrypoints=False, environ={"XDG_CONFIG_HOME": str(xdg)})
    torch.manual_seed(0)
    tokenizer = {  # every token part, per-sample time and location included
        "value": {"name": "fourier_value", "num_bands": 4},
        "position": {"name": "position", "num_bands": 4},
        "spectral": {"name": "spectral"},
        "time": {"name": "time"},
        "location": {"name": "location"},
    }
    config = {"num_classes": 4, "num_blocks": 2, "tokenizer": tokenizer}
    model = build_model("atomizer-tiny", config, host=host)
    example = graph_inputs(model, collate_atoms(atom_sets(3)))
    return model, export_program(model, example), export_program(model, example, output="embedding")


CASES = {
    "example": lambda: atom_sets(3),  # the example's sizes
    "more": lambda: atom_sets(5, seed=1),  # more samples, other atom counts
    "one": lambda: atom_sets(1, seed=2),  # one sample
    "empty": lambda: [*atom_sets(2, seed=3), atom_sets(1, seed=4)[0].take(np.arange(0))],
    "one-band": lambda: atom_sets(4, seed=5, bands=BANDS[:1]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_exported_program_equals_the_eager_model(exported, case):
    sets = CASES[case]()
    model, program, embedding_program = exported
    batch = collate_atoms(sets)
    inputs = graph_inputs(model, batch)
    with torch.no_grad():
        eager_logits, eager_embedding = model(batch), model.encode(batch)
    assert not model.training
    logits = program.module()(inputs)
    assert logits.shape == (len(sets), 4)
    torch.testing.assert_close(logits, eager_logits, atol=ATOL, rtol=0)
    embedding = embedding_program.module()(inputs)
    torch.testing.assert_close(embedding, eager_embedding, atol=ATOL, rtol=0)


def test_onnx_file_checks_and_runs_like_the_eager_model(exported, tmp_path):
    model, program, _ = exported
    path = export_onnx(program, tmp_path / "atomizer.onnx")
    assert path.is_file() and not list(tmp_path.glob(".*tmp"))
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]
    batch = collate_atoms(atom_sets(6, seed=7))
    inputs = graph_inputs(model, batch)
    assert [i.name for i in session.get_inputs()] == list(inputs)
    (logits,) = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(batch).numpy(), atol=ATOL, rtol=0)


def test_what_cannot_be_exported_is_one_clear_error(exported):
    model, _, _ = exported
    with pytest.raises(ExportError, match="at least 2 samples"):
        export_program(model, graph_inputs(model, collate_atoms(atom_sets(1))))
    with pytest.raises(ExportError, match="not a Linear"):
        graph_inputs(torch.nn.Linear(2, 2), collate_atoms(atom_sets(2)))
