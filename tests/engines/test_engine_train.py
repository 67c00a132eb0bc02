"""The training engine on the toy tasks: learning, logs, model selection, early stopping,
bit-for-bit resume and seeds, pickle-free checkpoints, refusals."""

from __future__ import annotations

import csv
import json

import _toy_task  # noqa: F401 - registers the toy tasks
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from mitokit.cli import cli
from mitokit.engines import train
from mitokit.engines.distributed import ShardedSampler
from mitokit.engines.state import load_state, pack_rng, rng_snapshot, unpack_rng
from mitokit.errors import MitokitError
from mitokit.models.io import load_model

FAST = {"task": "toy", "optim": {"lr": 1e-2}, "train": {"epochs": 4, "batch_size": 16}}


def _cfg(**sections):
    cfg = json.loads(json.dumps(FAST))
    for name, values in sections.items():
        if isinstance(values, dict):
            cfg.setdefault(name, {}).update(values)
        else:
            cfg[name] = values
    return cfg


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _rows(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_loss_decreases_and_every_epoch_is_logged(tmp_path):
    res = train(_cfg(), out=tmp_path / "run", progress=False)
    losses = [row["train_loss"] for row in res.history]
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0]
    assert res.history[-1]["val_loss"] < res.history[0]["val_loss"]
    assert all(row["train_items"] == 192 for row in res.history)  # 24 of 32 slides x 8 items

    out = res.out_dir
    assert json.loads((out / "log.json").read_text()) == res.history
    with open(out / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"train_loss", "train_mae", "val_loss", "val_mae", "lr", "seconds"} <= rows[0].keys()
    assert float(rows[2]["val_loss"]) == pytest.approx(res.history[2]["val_loss"])
    resolved = json.loads((out / "config.resolved.json").read_text())
    assert resolved["train"]["epochs"] == 4 and resolved["optim"]["lr"] == 1e-2
    info = json.loads((out / "info.json").read_text())
    assert not set(info["data"]["train_slides"]) & set(info["data"]["val_slides"])


def test_best_checkpoint_is_the_best_epoch(tmp_path):
    res = train(_cfg(task="toy-rigged"), out=tmp_path / "four", progress=False)
    assert res.best_epoch == 2 and res.best_val_loss == 1.0
    assert [row["best"] for row in res.history] == [True, True, False, False]
    model, meta = load_model(res.model_dir, expect_task="toy-rigged")
    assert meta["extra"]["epoch"] == 2 and meta["extra"]["val"]["loss"] == 1.0
    two = train(_cfg(task="toy-rigged", train={"epochs": 2}), out=tmp_path / "two", progress=False)
    assert _same(model.state_dict(), _weights(two.out_dir / "last"))
    assert not _same(_weights(res.out_dir / "best"), _weights(res.out_dir / "last"))


def test_early_stopping_and_min_delta(tmp_path):
    cfg = _cfg(task="toy-rigged", train={"epochs": 10, "patience": 2})
    res = train(cfg, out=tmp_path / "a", progress=False)
    assert res.stopped_early and len(res.history) == 4 and res.best_epoch == 2
    assert load_state(tmp_path / "a" / "state").progress.stopped_early
    again = train(cfg, out=tmp_path / "a", resume=True, progress=False)  # finished: no-op
    assert len(again.history) == 4

    cfg["train"]["min_delta"] = 2.5  # 3 -> 1 is an improvement of 2 only
    res = train(cfg, out=tmp_path / "b", progress=False)
    assert res.best_epoch == 1 and len(res.history) == 3


@pytest.mark.parametrize("optim", ["adam", "sgd"])
def test_resume_is_bit_for_bit(tmp_path, optim):
    cfg = _cfg(
        model={"dropout": 0.2},  # draws from the torch RNG: its state must be restored
        optim={"name": optim, "step_size": 1, "gamma": 0.5},
    )
    straight = train(cfg, out=tmp_path / "straight", progress=False)
    train(cfg, overrides=["train.epochs=2"], out=tmp_path / "cut", progress=False)
    resumed = train(cfg, out=tmp_path / "cut", resume=True, progress=False)
    assert _same(_weights(straight.out_dir / "last"), _weights(resumed.out_dir / "last"))
    assert _same(_weights(straight.out_dir / "best"), _weights(resumed.out_dir / "best"))
    assert _rows(straight.history) == _rows(resumed.history)
    logged = json.loads((resumed.out_dir / "log.json").read_text())
    assert _rows(logged) == _rows(straight.history)
    assert [row["lr"] for row in resumed.history] == [1e-2, 5e-3, 2.5e-3, 1.25e-3]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    cfg = _cfg(train={"epochs": 2})
    a = train(cfg, out=tmp_path / "a", progress=False)
    b = train(cfg, out=tmp_path / "b", progress=False)
    c = train(cfg, overrides=["train.seed=1"], out=tmp_path / "c", progress=False)
    assert _same(_weights(a.model_dir), _weights(b.model_dir))
    assert not _same(_weights(a.model_dir), _weights(c.model_dir))


def test_checkpoints_hold_no_pickle(tmp_path):
    res = train(_cfg(train={"epochs": 1}), out=tmp_path / "run", progress=False)
    files = [p for p in res.out_dir.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= {".safetensors", ".json", ".csv"}
    assert all(not p.read_bytes().startswith(b"\x80") for p in files)  # pickle protocol 2+
    state = sorted(p.name for p in (res.out_dir / "state").iterdir())
    assert state == ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]
    loaded = load_state(res.out_dir / "state")
    assert loaded.progress.epoch == 1 and "state.0.exp_avg" in loaded.optimizer_tensors
    assert {"torch_cpu", "loader"} <= loaded.rng[0].tensors.keys()


def test_rng_snapshot_round_trips_through_bytes():
    gen = torch.Generator().manual_seed(3)
    snap = unpack_rng(pack_rng(rng_snapshot(gen)))
    assert torch.equal(snap.tensors["loader"], gen.get_state())
    assert snap.meta["numpy"][0] == "MT19937" and len(snap.meta["python"][1]) == 625


def test_refusals(tmp_path):
    with pytest.raises(MitokitError, match="training set is empty"):
        train(_cfg(data={"val_fraction": 1.0}), out=tmp_path / "empty", progress=False)
    with pytest.raises(MitokitError, match="class 1 has no samples"):
        train(_cfg(task="toy-refusing"), out=tmp_path / "refused", progress=False)
    with pytest.raises(MitokitError, match="nothing to resume"):
        train(_cfg(), out=tmp_path / "none", resume=True, progress=False)
    run = tmp_path / "run"
    train(_cfg(train={"epochs": 1}), out=run, progress=False)
    with pytest.raises(MitokitError, match="already holds a training run"):
        train(_cfg(train={"epochs": 1}), out=run, progress=False)
    with pytest.raises(MitokitError, match=r"differs .* optim\.lr"):
        train(_cfg(), overrides=["optim.lr=0.5"], out=run, resume=True, progress=False)
    with pytest.raises(MitokitError, match="diverged"):
        train(_cfg(optim={"lr": 1e38, "name": "sgd"}), out=tmp_path / "nan", progress=False)


def test_no_validation_keeps_the_last_epoch(tmp_path):
    res = train(_cfg(data={"val_fraction": 0.0}, train={"epochs": 2}), out=tmp_path / "r")
    assert res.best_epoch == 2 and res.best_val_loss is None
    assert _same(_weights(res.out_dir / "best"), _weights(res.out_dir / "last"))


def test_bf16_on_cpu_warns_and_trains_in_float32(tmp_path):
    cfg = _cfg(train={"epochs": 1, "amp": "bf16"})
    with pytest.warns(UserWarning, match="CUDA only"):
        res = train(cfg, out=tmp_path / "r", progress=False)
    assert json.loads((res.out_dir / "info.json").read_text())["bf16_autocast"] is False


def test_batches_move_to_the_device_channels_last():
    from mitokit.engines.loaders import _to_device

    batch = {"image": torch.rand(2, 3, 8, 8), "boxes": [torch.zeros(1, 4)], "id": ("a", "b")}
    moved = _to_device(batch, torch.device("cpu"), channels_last=True)
    assert moved["image"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(moved["image"], batch["image"]) and moved["id"] == ("a", "b")


def test_sharded_sampler_splits_evenly():
    class Seq:
        def __init__(self, n):
            self.n, self.epoch = n, None

        def __len__(self):
            return self.n

        def __iter__(self):
            return iter(range(self.n))

        def set_epoch(self, epoch):
            self.epoch = epoch

    inner = Seq(7)
    shards = [ShardedSampler(inner, num_replicas=3, rank=r) for r in range(3)]
    parts = [list(s) for s in shards]
    assert parts == [[0, 3, 6], [1, 4, 1], [2, 5, 2]]  # padded to equal length
    assert all(len(s) == 3 for s in shards)
    shards[1].set_epoch(5)
    assert inner.epoch == 5
    with pytest.raises(ValueError, match="rank"):
        ShardedSampler(inner, num_replicas=2, rank=2)


def test_cli_train_and_resume(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("task: toy\nplugins: [_toy_task]\noptim: {lr: 1e-2}\ntrain: {epochs: 2}\n")
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", str(cfg), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "best epoch 2 of 2" in res.output and str(out / "best") in res.output
    args = ["train", str(cfg), "--out", str(out), "--resume", "--set", "train.epochs=3", "--json"]
    res = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["epochs_run"] == 3


def test_time_budget_stops_between_epochs_and_resume_finishes(tmp_path):
    cfg = _cfg()
    straight = train(cfg, out=tmp_path / "straight", progress=False)
    # a budget no epoch fits in: the first epoch runs, then the run stops with a full checkpoint
    cut = train(cfg, overrides=["train.max_minutes=1e-9"], out=tmp_path / "cut", progress=False)
    assert cut.out_of_time and cut.epochs_run == 1
    assert load_state(tmp_path / "cut" / "state").progress.epoch == 1
    resumed = train(cfg, out=tmp_path / "cut", resume=True, progress=False)
    assert not resumed.out_of_time and resumed.epochs_run == 4
    assert _same(_weights(straight.out_dir / "last"), _weights(resumed.out_dir / "last"))
    roomy = train(cfg, overrides=["train.max_minutes=60"], out=tmp_path / "roomy", progress=False)
    assert not roomy.out_of_time and roomy.epochs_run == 4
    with pytest.raises(MitokitError, match="max_minutes"):
        train(cfg, overrides=["train.max_minutes=-1"], out=tmp_path / "bad", progress=False)


def test_save_every_checkpoints_sparsely_keeps_best_and_the_final_epoch(tmp_path):
    rigged = _cfg(task="toy-rigged", train={"epochs": 3, "save_every": 2})
    res = train(rigged, out=tmp_path / "rigged", progress=False)
    assert res.best_epoch == 2  # best/ is saved when validation improves, even off-schedule
    assert load_model(res.model_dir, expect_task="toy-rigged")[1]["extra"]["epoch"] == 2
    assert load_model(res.out_dir / "last")[1]["extra"]["epoch"] == 3  # the final epoch
    cfg = _cfg(data={"val_fraction": 0.0}, train={"epochs": 3, "save_every": 2})
    train(cfg, overrides=["train.epochs=1"], out=tmp_path / "one", progress=False)
    assert load_state(tmp_path / "one" / "state").progress.epoch == 1  # final epoch: saved
    sparse = train(cfg, out=tmp_path / "sparse", progress=False)
    every = train({**cfg, "train": {**cfg["train"], "save_every": 1}}, out=tmp_path / "every")
    assert _same(_weights(sparse.out_dir / "last"), _weights(every.out_dir / "last"))
    assert json.loads((sparse.out_dir / "log.json").read_text())[1]["epoch"] == 2


def test_state_of_a_channels_last_model_saves_and_loads(tmp_path):
    # CUDA runs are channels_last: the weights and the Adam moments of 4-d kernels are then
    # strided, which safetensors refuses unless the state is packed first
    from mitokit.engines.state import Progress, save_state

    model = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    assert not model.weight.is_contiguous()
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)).sum().backward()
    opt.step()
    snap = rng_snapshot(torch.Generator())
    save_state(
        tmp_path / "state",
        model=model,
        optimizer=opt,
        scheduler=None,
        progress=Progress(epoch=1),
        rng=[snap],
        config={"train": {}},
    )
    loaded = load_state(tmp_path / "state")
    assert torch.equal(loaded.model["weight"], model.weight.detach())
    assert loaded.progress.epoch == 1
