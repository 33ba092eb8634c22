"""Two CPU processes (gloo) under DistributedDataParallel give the single-process loss and update.

Every rank gets half of one batch; the losses gather embeddings across ranks with gradient, so the
loss each rank computes equals the single-process loss on the whole batch, and after DDP averages
the gradients, one SGD step leaves exactly the weights a single process would have.
"""

from __future__ import annotations

import datetime as dt
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from atomizer import hookimpl
from atomizer.atoms.atomset import AtomSet, SceneMeta
from atomizer.atoms.batch import AtomBatch, collate_atoms
from atomizer.pretrain.augment import AugmentConfig, Augmenter
from atomizer.pretrain.chips import Chip
from atomizer.pretrain.config import parse_config
from atomizer.pretrain.losses import parse_method_label
from atomizer.pretrain.metadata import MetadataRecord
from atomizer.pretrain.pretrainer import build_satmip_model, make_views, pretrain, train_step
from atomizer.sensors.spec import Band

METHODS = ("simclr", "satmip", "satmips-coupled", "satmips-uncoupled")
WORLD = 2
BATCH = 8


class ToyEncoder(nn.Module):
    """Deterministic toy image encoder (masked mean of an MLP over atom features)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, width), nn.Tanh(), nn.Linear(width, width))

    def encode(self, batch: AtomBatch) -> torch.Tensor:
        feats = torch.stack([batch.value, batch.x.abs() / 50, batch.y.abs() / 50], dim=-1)
        h = self.net(feats) * batch.mask[..., None]
        return h.sum(1) / batch.mask.sum(1, keepdim=True).clamp(min=1)


class ToyPlugin:
    @hookimpl
    def register_models(self, register):
        register("ddp-toy", lambda **params: ToyEncoder(**params))


def _host():
    from atomizer.plugins.host import PluginHost

    return PluginHost(load_entrypoints=False, environ={}, extra_plugins=(ToyPlugin(),))


def _config():
    return parse_config(
        {
            "name": "ddp",
            "image_encoder": {"name": "ddp-toy", "params": {"width": 8}},
            "metadata_encoder": {"name": "tabular", "params": {"width": 8, "depth": 1, "heads": 2}},
            "embed_dim": 8,
            "projection_hidden": 16,
            "optim": {"epochs": 1, "batch_size": BATCH},
            "data": {"root": ".", "sources": [{"kind": "s2_tile", "path": "x"}]},
        }
    )


def _chips(n: int) -> list[Chip]:
    rng = np.random.default_rng(7)
    band = Band(name="B1", center_wavelength_nm=665.0, fwhm_nm=30.0, gsd_m=10.0)
    out = []
    for i in range(n):
        g = 10.0 * (1 + i % 3)
        c = (np.arange(3) + 0.5 - 1.5) * g
        xx, yy = np.meshgrid(c, c)
        atoms = AtomSet(
            value=rng.random(xx.size),
            band=np.zeros(xx.size, int),
            x=xx.ravel(),
            y=yy.ravel(),
            bands=(band.model_copy(update={"gsd_m": g}),),
            scene=SceneMeta(sensor_id="toy"),
        )
        meta = MetadataRecord(gsd_m=g, lon=float(i), lat=10.0, date=dt.date(2021, 1 + i % 12, 1))
        out.append(Chip(atoms, meta, None, f"g{i}", "toy"))
    return out


def _slice(batch: AtomBatch, sl: slice) -> AtomBatch:
    return replace(
        batch,
        value=batch.value[sl],
        band=batch.band[sl],
        x=batch.x[sl],
        y=batch.y[sl],
        mask=batch.mask[sl],
        scenes=batch.scenes[sl],
    )


def _one_step(method: str, rank: int | None) -> np.ndarray:
    """Loss, then every parameter after one SGD step; ``rank`` None: the whole batch, 1 process."""
    cfg, host = _config(), _host()
    objective = parse_method_label(method)
    chips = _chips(BATCH)
    views, records = make_views(
        chips, objective, Augmenter(AugmentConfig(max_atoms=7)), np.random.default_rng(3)
    )
    torch.manual_seed(0)
    model = build_satmip_model(cfg, objective, host, example=views[0])
    net: nn.Module = model
    if rank is not None:
        per = BATCH // WORLD
        sl = slice(rank * per, (rank + 1) * per)
        views, records = [_slice(v, sl) for v in views], records[sl]
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    parts = train_step(net, objective, views, records, optimizer)
    params = torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()
    return np.concatenate([[parts.total.item()], params])


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    try:
        for method in METHODS:
            np.save(Path(out_dir) / f"{method}-rank{rank}.npy", _one_step(method, rank))
        # the whole training loop: ranks share each global batch and stay in sync
        res = pretrain(_config(), _chips(16), method="satmips-coupled", host=_host())
        params = torch.cat([p.detach().flatten() for p in res.model.parameters()]).numpy()
        np.save(Path(out_dir) / f"loop-rank{rank}.npy", params)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory) -> Path:
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return out


@pytest.mark.parametrize("method", METHODS)
def test_ddp_step_equals_single_process_step(ddp_results: Path, method: str) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _one_step(method, None)
    finally:
        torch.set_num_threads(before)
    for rank in range(WORLD):
        got = np.load(ddp_results / f"{method}-rank{rank}.npy")
        assert got[0] == pytest.approx(single[0], rel=1e-6), "gathered loss != single-process loss"
        np.testing.assert_allclose(got[1:], single[1:], rtol=1e-5, atol=1e-6)
    # the step did change the weights (so the comparison above is not vacuous)
    torch.manual_seed(0)
    assert not np.allclose(single[1:], _initial_params(method))


def _initial_params(method: str) -> np.ndarray:
    torch.manual_seed(0)
    objective = parse_method_label(method)
    example = collate_atoms([c.atoms for c in _chips(2)])
    model = build_satmip_model(_config(), objective, _host(), example=example)
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy()


def test_ddp_training_loop_keeps_ranks_in_sync(ddp_results: Path) -> None:
    a = np.load(ddp_results / "loop-rank0.npy")
    b = np.load(ddp_results / "loop-rank1.npy")
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
