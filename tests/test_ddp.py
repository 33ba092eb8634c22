"""DDP on CPU: 2 gloo processes train like one process on the same global batch."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from training_toys import ToyAtomDataset, build_toy

from atomizer.training.batches import collate_labelled
from atomizer.training.checkpoint import latest_checkpoint, load_checkpoint
from atomizer.training.distributed import DistContext, from_environment, shutdown
from atomizer.training.trainer import Trainer, TrainSettings

WORLD = 2
EPOCHS = 2
STEPS_PER_EPOCH = 4  # 29 samples, global batch 8
#: Tolerances of DDP against one process, per model: the gradient all-reduce sums in another order,
#: and Adam (lr / sqrt(v)) amplifies that round-off on parameters whose gradient is (near) zero
#: (measured on the tiny Atomizer: 4e-4 at most, on core.pool.to_kv.weight).
WEIGHT_ATOL = {"toy": 1e-6, "atomizer": 2e-3}
WEIGHT_RTOL = {"toy": 1e-5, "atomizer": 1e-3}
LOSS_RTOL = {"toy": 1e-5, "atomizer": 1e-3}
LOGIT_ATOL = {"toy": 1e-5, "atomizer": 1e-3}
METRIC_ABS = 1e-3  # percentage points: the same predictions up to float round-off
#: The key half of a cross-attention ``to_kv.bias`` adds ``q . b`` to every logit of a softmax
#: row, so its gradient is exactly zero; Adam turns the round-off left in it into steps of +-lr
#: whose signs differ between the runs (1e-2 measured). Those entries are arbitrary, not compared.
KEY_BIAS_SUFFIX = "to_kv.bias"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(kind: str, run_dir: Path) -> torch.nn.Module:
    """``toy``, or the real tiny Atomizer without atom dropping (both runs see the same atoms)."""
    if kind == "toy":
        return build_toy({"width": 8})
    from atomizer.models import build_model
    from atomizer.plugins.host import PluginHost

    host = PluginHost(load_entrypoints=False, environ={"XDG_CONFIG_HOME": str(run_dir / "xdg")})
    config = {"num_classes": 3, "task": "multiclass", "atom_drop_p": 0.0}
    return build_model("atomizer-tiny", config, host=host)


def _val_set() -> ToyAtomDataset:
    return ToyAtomDataset(10, seed=2)


def _trainer(run_dir: Path, dist: DistContext | None = None, kind: str = "toy") -> Trainer:
    settings = TrainSettings(
        task="multiclass",
        num_classes=3,
        epochs=EPOCHS,
        batch_size=8,
        lr=2e-2,
        seed=4,
        metrics=("overall_accuracy", "map_macro"),
        device="cpu",
        deterministic=True,
    )
    return Trainer(
        model_factory=lambda: _model(kind, run_dir),
        train_set=ToyAtomDataset(29),  # 3 batches of 8, then 5 split 3 + 2 across the ranks
        val_sets={"val": _val_set()},
        settings=settings,
        run_dir=run_dir,
        dist=dist,
        tensorboard=False,
    )


@torch.no_grad()
def _val_logits(model: torch.nn.Module) -> torch.Tensor:
    """``model``'s logits on the whole validation set, in eval mode."""
    data = _val_set()
    batch, _ = collate_labelled(
        [data[i] for i in range(len(data))], task="multiclass", num_classes=3
    )
    return model.eval()(batch)


def _worker(rank: int, port: int, run_dir: str, kind: str) -> None:
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
        _trainer(Path(run_dir), ctx, kind).fit()
    finally:
        shutdown(ctx)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["toy", "atomizer"])
def test_two_gloo_processes_match_one_process(tmp_path, kind):
    torch.set_num_threads(1)
    single = _trainer(tmp_path / "single", kind=kind).fit()
    mp.spawn(_worker, args=(_free_port(), str(tmp_path / "ddp"), kind), nprocs=WORLD, join=True)
    ddp = load_checkpoint(latest_checkpoint(tmp_path / "ddp"))
    assert ddp.record.world_size == WORLD and ddp.record.finished
    assert ddp.global_step == single.global_step == EPOCHS * STEPS_PER_EPOCH
    state = single.model.state_dict()
    assert ddp.model_state.keys() == state.keys()
    for name, value in state.items():
        other = ddp.model_state[name]
        if name.endswith(KEY_BIAS_SUFFIX):  # compare the value half only (see KEY_BIAS_SUFFIX)
            value, other = value.chunk(2)[1], other.chunk(2)[1]
        torch.testing.assert_close(
            other,
            value,
            rtol=WEIGHT_RTOL[kind],
            atol=WEIGHT_ATOL[kind],
            msg=lambda m, name=name: f"{name}: {m}",
        )
    # the two models compute the same function, key biases included
    twin = _model(kind, tmp_path)
    twin.load_state_dict(ddp.model_state)
    torch.testing.assert_close(
        _val_logits(twin), _val_logits(single.model), rtol=0.0, atol=LOGIT_ATOL[kind]
    )
    # every epoch: the same training loss, and validation sharded over the ranks then gathered
    # gives the metrics of the whole set
    history = ddp.record.history
    assert [row["epoch"] for row in history] == [row["epoch"] for row in single.history]
    for mine, theirs in zip(history, single.history, strict=True):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=LOSS_RTOL[kind])
        for key in ("val/val/overall_accuracy", "val/val/map_macro"):
            assert mine[key] == pytest.approx(theirs[key], abs=METRIC_ABS), key
    # only rank 0 wrote: one set of logs and checkpoints
    assert (tmp_path / "ddp" / "metrics.csv").exists()
    assert len(list((tmp_path / "ddp" / "checkpoints").glob("*.json"))) == 2


def test_environment_without_torchrun_is_single_process():
    ctx = from_environment({})
    assert not ctx.is_distributed and ctx.is_main and ctx.world_size == 1
    assert ctx.gather_objects(3) == [3]
