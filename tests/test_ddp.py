"""DDP on CPU: 2 gloo processes train like one process on the same global batch."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from training_toys import ToyAtomDataset, build_toy

from atomizer.training.checkpoint import latest_checkpoint, load_checkpoint
from atomizer.training.distributed import DistContext, from_environment, shutdown
from atomizer.training.trainer import Trainer, TrainSettings

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trainer(run_dir: Path, dist: DistContext | None = None) -> Trainer:
    settings = TrainSettings(
        task="multiclass",
        num_classes=3,
        epochs=2,
        batch_size=8,
        lr=2e-2,
        seed=4,
        metrics=("overall_accuracy", "map_macro"),
        device="cpu",
        deterministic=True,
    )
    return Trainer(
        model_factory=lambda: build_toy({"width": 8}),
        train_set=ToyAtomDataset(29),  # 3 batches of 8, then 5 split 3 + 2 across the ranks
        val_sets={"val": ToyAtomDataset(10, seed=2)},
        settings=settings,
        run_dir=run_dir,
        dist=dist,
        tensorboard=False,
    )


def _worker(rank: int, port: int, run_dir: str) -> None:
    """One process as torchrun would start it: the job is described by environment variables."""
    torch.set_num_threads(1)
    env = {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(WORLD),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    ctx = from_environment(env, device_type="cpu")
    assert ctx.rank == rank and ctx.world_size == WORLD
    try:
        _trainer(Path(run_dir), ctx).fit()
    finally:
        shutdown(ctx)


def test_two_gloo_processes_match_one_process(tmp_path):
    torch.set_num_threads(1)
    single = _trainer(tmp_path / "single").fit()
    mp.spawn(_worker, args=(_free_port(), str(tmp_path / "ddp")), nprocs=WORLD, join=True)
    ddp = load_checkpoint(latest_checkpoint(tmp_path / "ddp"))
    assert ddp.meta["world_size"] == WORLD and ddp.meta["finished"]
    assert ddp.global_step == single.global_step == 2 * 4
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(ddp.model_state[name], value, rtol=1e-5, atol=1e-6)
    # validation is sharded over the ranks and gathered: the metrics are those of the whole set
    for key in ("val/val/overall_accuracy", "val/val/map_macro"):
        assert ddp.meta["history"][-1][key] == pytest.approx(single.history[-1][key], abs=1e-3)
    # only rank 0 wrote: one set of logs and checkpoints
    assert (tmp_path / "ddp" / "metrics.csv").exists()
    assert len(list((tmp_path / "ddp" / "checkpoints").glob("*.json"))) == 2


def test_environment_without_torchrun_is_single_process():
    ctx = from_environment({})
    assert not ctx.is_distributed and ctx.is_main and ctx.world_size == 1
    assert ctx.gather_objects(3) == [3]
