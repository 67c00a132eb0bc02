"""Data-parallel training: two processes under torchrun on the gloo backend (CPU)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import _toy_task  # noqa: F401 - registers the toy task here too (for load_model)
import pytest

TESTS = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    if not TORCHRUN.is_file():
        pytest.skip(f"no torchrun beside {sys.executable}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    cmd = [
        str(TORCHRUN),
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "mitokit",
        "train",
        str(cfg),
        "--no-progress",
        *args,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=90, check=False)


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(
        "task: toy\nplugins: [_toy_task]\noptim: {lr: 1e-2}\n"
        "train: {epochs: 2, batch_size: 16, device: cpu}\n"
    )
    return cfg


def test_two_processes_split_the_data_and_rank_0_writes(tmp_path):
    out = tmp_path / "run"
    proc = _torchrun(_config(tmp_path), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("best epoch") == 1  # only rank 0 prints

    assert len(list(tmp_path.rglob("log.json"))) == 1 and len(list(tmp_path.rglob("log.csv"))) == 1
    history = json.loads((out / "log.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    # 192 training items (24 slides of 8), half on each rank, every epoch
    assert all(row["train_items_per_rank"] == [96, 96] for row in history)
    assert json.loads((out / "info.json").read_text())["world_size"] == 2

    from mitokit.models.io import load_model

    model, meta = load_model(out / "best", expect_task="toy")
    assert meta["extra"]["epoch"] in (1, 2) and sum(p.numel() for p in model.parameters()) > 0
    assert (out / "state" / "rng.safetensors").is_file()


@pytest.mark.slow
def test_two_process_resume_is_bit_for_bit(tmp_path):
    from safetensors.torch import load_file

    cfg = _config(tmp_path)
    for args in (
        ["--out", "a"],
        ["--out", "b", "--set", "train.epochs=1"],
        ["--out", "b", "--resume"],
    ):
        args[1] = str(tmp_path / args[1])
        proc = _torchrun(cfg, *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_two_processes_stop_together_on_the_time_budget_and_checkpoint_sparsely(tmp_path):
    cfg = _config(tmp_path)
    # a budget no epoch fits in: both ranks stop after epoch 1 (a rank going on would hang)
    proc = _torchrun(cfg, "--out", str(tmp_path / "cut"), "--set", "train.max_minutes=1e-9")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["epoch"] for r in json.loads((tmp_path / "cut" / "log.json").read_text())] == [1]
    cut = json.loads((tmp_path / "cut" / "state" / "state.json").read_text())
    assert cut["progress"]["epoch"] == 1  # the last epoch run is always checkpointed
    # epoch 1 is no checkpoint epoch (save_every 2): the ranks still meet at its barrier
    args = ["--out", str(tmp_path / "sparse"), "--set", "train.save_every=2"]
    proc = _torchrun(cfg, *args, "--set", "train.epochs=3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((tmp_path / "sparse" / "state" / "state.json").read_text())
    assert state["progress"]["epoch"] == 3
