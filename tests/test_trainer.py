"""The training loop: learning, logs, deterministic seeds, exact mid-epoch resume."""

from __future__ import annotations

import csv
import itertools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from training_toys import ToyAtomDataset, build_toy

from atomizer.errors import CheckpointError, OutputError
from atomizer.training.checkpoint import (
    CheckpointContent,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
)
from atomizer.training.evaluate import evaluate_model
from atomizer.training.trainer import Trainer, TrainSettings

METRICS = ("overall_accuracy", "map_macro", "f1_macro")


def make_trainer(
    run_dir: Path, *, epochs: int = 3, every: int | None = 2, seed: int = 0, drop_p: float = 0.2
):
    settings = TrainSettings(
        task="multiclass",
        num_classes=3,
        epochs=epochs,
        batch_size=8,
        lr=2e-2,
        seed=seed,
        metrics=METRICS,
        checkpoint_every_steps=every,
        device="cpu",
    )
    return Trainer(
        model_factory=lambda: build_toy({"drop_p": drop_p}),
        train_set=ToyAtomDataset(36),
        val_sets={"val": ToyAtomDataset(12, seed=1)},
        settings=settings,
        run_dir=run_dir,
        content=CheckpointContent(model_name="toy", experiment_fingerprint="abc"),
        tensorboard=False,
    )


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k, value in a.items():
        assert torch.equal(value, b[k]), k


def val_columns(history):
    return [
        {k: v for k, v in row.items() if k.startswith(("val/", "train_loss", "global_step"))}
        for row in history
    ]


def test_training_learns_and_logs(tmp_path):
    result = make_trainer(tmp_path / "run", epochs=4, every=None).fit()
    assert result.finished and result.epochs_done == 4
    assert result.global_step == 4 * 5  # 36 samples, batch 8 -> 5 steps per epoch
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["val/val/overall_accuracy"]) == pytest.approx(
        result.history[-1]["val/val/overall_accuracy"]
    )
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.record.finished and ckpt.epoch == 4 and ckpt.global_step == 20


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a = make_trainer(tmp_path / "a", epochs=1, every=None).fit()
    b = make_trainer(tmp_path / "b", epochs=1, every=None).fit()
    c = make_trainer(tmp_path / "c", epochs=1, every=None, seed=1).fit()
    assert_same_weights(weights(a.model), weights(b.model))
    assert not torch.equal(a.model.head.weight, c.model.head.weight)


def test_resume_mid_epoch_is_bit_exact(tmp_path):
    full = make_trainer(tmp_path / "full").fit()
    # stop at step 7 (mid epoch 2): the newest checkpoint is at step 6, step 7 is lost as in a crash
    partial = make_trainer(tmp_path / "part").fit(stop_after_steps=7)
    assert not partial.finished
    assert load_checkpoint(latest_checkpoint(tmp_path / "part")).global_step == 6
    resumed = make_trainer(tmp_path / "part").fit(resume=True)
    assert resumed.finished and resumed.global_step == full.global_step
    assert_same_weights(weights(full.model), weights(resumed.model))
    assert val_columns(resumed.history) == val_columns(full.history)
    with open(tmp_path / "part" / "metrics.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_checkpoints_are_pruned_and_refuse_overwrite(tmp_path):
    make_trainer(tmp_path / "run").fit()
    assert len(list_checkpoints(tmp_path / "run")) == 2
    with pytest.raises(OutputError, match="--resume"):
        make_trainer(tmp_path / "run").fit()
    with pytest.raises(CheckpointError, match="nothing to resume"):
        make_trainer(tmp_path / "empty").fit(resume=True)


def test_resume_refuses_another_seed(tmp_path):
    make_trainer(tmp_path / "run").fit(stop_after_steps=4)
    with pytest.raises(CheckpointError, match="seed"):
        make_trainer(tmp_path / "run", seed=3).fit(resume=True)


def test_evaluate_model_turns_off_training_mode(tmp_path):
    model = build_toy({"drop_p": 0.9})
    model.train()
    data = ToyAtomDataset(9)
    a = evaluate_model(model, data, task="multiclass", num_classes=3, metrics=METRICS, batch_size=4)
    b = evaluate_model(model, data, task="multiclass", num_classes=3, metrics=METRICS, batch_size=9)
    assert a == b  # no random atom dropping in evaluation, batch size does not matter
    assert model.training


#: The child kills itself with SIGKILL right after the checkpoint of this step (mid epoch 2).
KILL_AT_STEP = 6
#: 36 samples, batch 8 -> 5 steps per epoch, 3 epochs.
TOTAL_STEPS = 15
#: Upper bound on one child process (start-up, imports, 15 toy steps) on a busy machine.
CHILD_TIMEOUT_S = 120

_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from test_trainer import make_trainer
    from pathlib import Path

    from atomizer.training import loop

    t = make_trainer(Path({run!r}))
    kill_at = {kill_at!r}
    if kill_at is not None:  # testing hook: crash right after the checkpoint of step kill_at
        save = loop._Run.save
        def _save(self, net, optimizer, schedule, state, step_in_epoch, done):
            save(self, net, optimizer, schedule, state, step_in_epoch, done)
            if state.step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        loop._Run.save = _save
    r = t.fit(resume={resume})
    print("FINISHED", r.global_step, flush=True)
    """
)


def _script(run: Path, resume: bool, kill_at: int | None = None) -> list[str]:
    code = _SCRIPT.format(
        tests=str(Path(__file__).parent), run=str(run), resume=resume, kill_at=kill_at
    )
    return [sys.executable, "-c", code]


def _run_child(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run a child to completion (killed on timeout or failure of this test); code and stdout."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    try:
        out, _ = proc.communicate(timeout=CHILD_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_weights(tmp_path):
    """A real crash: the training process is SIGKILLed after its step-6 checkpoint, then resumed."""
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code, out = _run_child(_script(run, False, kill_at=KILL_AT_STEP), env)
    assert code == -signal.SIGKILL and "FINISHED" not in out
    crashed = load_checkpoint(latest_checkpoint(run))
    assert crashed.global_step == KILL_AT_STEP and crashed.record.step_in_epoch == 1
    assert not crashed.record.finished
    code, out = _run_child(_script(run, True), env)
    assert code == 0 and f"FINISHED {TOTAL_STEPS}" in out
    make_trainer(tmp_path / "full").fit()  # the uninterrupted run, in this process
    a = load_checkpoint(latest_checkpoint(run))
    b = load_checkpoint(latest_checkpoint(tmp_path / "full"))
    assert a.record.finished and a.global_step == b.global_step == TOTAL_STEPS
    assert_same_weights(a.model_state, b.model_state)
    assert_same_weights(a.optimizer_tensors, b.optimizer_tensors)
    assert val_columns(a.record.history) == val_columns(b.record.history)


def test_precision_auto_is_bf16_on_cuda_only():
    from contextlib import nullcontext

    from atomizer.training.evaluate import autocast

    assert isinstance(autocast(torch.device("cpu"), "auto"), nullcontext)
    if torch.cuda.is_available():  # pragma: no cover - GPU machines only
        assert not isinstance(autocast(torch.device("cuda"), "auto"), nullcontext)


@settings(max_examples=30, deadline=None)
@given(
    warmup=st.integers(0, 20),
    total=st.integers(1, 60),
    ratio=st.floats(0.0, 0.5),
    peak=st.floats(1e-5, 1.0),
)
def test_schedule_warms_up_then_decays(warmup, total, ratio, peak):
    """Property: lr rises linearly to the peak, then never increases and ends at ratio * peak."""
    from atomizer.training.schedule import WarmupCosineSchedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=123.0)
    sched = WarmupCosineSchedule(
        opt, peak_lr=peak, warmup_steps=warmup, total_steps=total, min_lr_ratio=ratio
    )
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    w = min(warmup, total)
    assert lrs[:w] == pytest.approx([peak * (i + 1) / w for i in range(w)])
    after = lrs[w:]
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(after))
    assert all(0.0 < v <= peak + 1e-12 for v in lrs)
    assert all(ratio * peak - 1e-12 <= v for v in after)
    if after:
        assert after[0] == pytest.approx(peak)
    assert sched.lr_at(10 * total) == pytest.approx(ratio * peak)
    clone = WarmupCosineSchedule(opt, peak_lr=1.0, warmup_steps=0, total_steps=1)
    clone.load_state_dict(sched.state_dict())
    assert clone.lr == sched.lr and opt.param_groups[0]["lr"] == sched.lr


def test_linear_scaling_rule_and_weight_decay_groups():
    from atomizer.training.config import OptimizerConfig
    from atomizer.training.schedule import build_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, OptimizerConfig(weight_decay=0.1, betas=(0.9, 0.98)), lr=0.5)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert [p.ndim for p in decayed["params"]] == [2]
    assert len(plain["params"]) == 3 and decayed["betas"] == (0.9, 0.98)
