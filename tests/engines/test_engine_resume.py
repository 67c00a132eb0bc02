"""Resume means resume: a run cut short (after an epoch, or killed in the middle of one) and
resumed ends with the very weights of an uninterrupted run, with the data loader shuffling,
augmentations drawn in the main process or in workers, dropout and noise draws; a killed run's
temporaries are cleared by the next run in its folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import _resume_task  # noqa: F401 - registers toy-augmented
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mitokit.engines import train
from mitokit.engines.state import has_state, load_state
from mitokit.models._common import WorkerDraws

TESTS = Path(__file__).resolve().parents[1]


def _cfg(epochs: int = 3, workers: int = 0) -> dict:
    return {
        "task": "toy-augmented",
        "plugins": ["_resume_task"],
        "data": {"n": 96},
        "optim": {"lr": 1e-2, "step_size": 1, "gamma": 0.7},
        "train": {"epochs": epochs, "batch_size": 8, "num_workers": workers},
    }


def _tensors(run: Path) -> dict[str, torch.Tensor]:
    """Every tensor a run ends with: last and best weights, the state's model and optimizer."""
    out = {}
    for name in ("last/model.safetensors", "best/model.safetensors"):
        out.update({f"{name}:{k}": v for k, v in load_file(str(run / name)).items()})
    state = load_state(run / "state")
    out.update({f"state.model:{k}": v for k, v in state.model.items()})
    out.update({f"state.optimizer:{k}": v for k, v in state.optimizer_tensors.items()})
    return out


def _differing(a: Path, b: Path) -> list[str]:
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    return [k for k in ta if not torch.equal(ta[k], tb[k])]


def _rows(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize("workers", [0, 2])
def test_one_epoch_resumed_to_three_equals_three_straight(tmp_path, workers):
    cfg = _cfg(workers=workers)
    straight = train(cfg, out=tmp_path / "straight", progress=False)
    train(cfg, overrides=["train.epochs=1"], out=tmp_path / "cut", progress=False)
    resumed = train(cfg, out=tmp_path / "cut", resume=True, progress=False)
    assert _differing(straight.out_dir, resumed.out_dir) == []
    assert _rows(resumed.history) == _rows(straight.history)
    # the augmentation is live: another seed's run differs, and so do its epochs' losses
    other = train(cfg, overrides=["train.seed=1"], out=tmp_path / "other", progress=False)
    assert _differing(straight.out_dir, other.out_dir)


def test_worker_draws_follow_the_torch_seed_in_the_main_process():
    # as the engine seeds torch at the start of each epoch: a new seed, a new stream
    draws = WorkerDraws(5)
    torch.manual_seed(1)
    a = draws.get().random(3)
    assert not np.array_equal(draws.get().random(3), a)  # the stream goes on within a seed
    torch.manual_seed(2)
    b = draws.get().random(3)
    torch.manual_seed(1)
    assert np.array_equal(draws.get().random(3), a) and not np.array_equal(a, b)
    fresh = WorkerDraws(5)  # e.g. in a resumed run
    assert np.array_equal(fresh.get().random(3), a)
    assert not np.array_equal(WorkerDraws(6).get().random(3), a)  # its own seed counts too


# --------------------------------------------------------------------------------------------
# a real kill


def _kill_in_epoch_two(run: Path, cfg: dict, *, seed: int, delay: float, batches: int) -> float:
    """Train ``cfg`` in a subprocess; SIGKILL it at a random point of epoch 2 (seeded)."""
    path = run.parent / f"{run.name}.json"
    path.write_text(json.dumps(cfg))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        "TOY_AUGMENTED_DELAY": str(delay),
    }
    cmd = [sys.executable, "-m", "mitokit", "train", str(path), "--out", str(run)]
    proc = subprocess.Popen(
        [*cmd, "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 120
        while not has_state(run):  # epoch 1's state is written
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no state after 120 s"
            time.sleep(0.01)
        wait = float(np.random.default_rng(seed).uniform(0.1, 0.9)) * delay * batches
        time.sleep(wait)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    return wait


_WRITER = """
import os, signal, sys
from pathlib import Path
from mitokit.io.atomic import atomic_dir, atomic_path

target = Path(sys.argv[1])
if sys.argv[2] == "dir":
    with atomic_dir(target, overwrite=True) as tmp:
        (tmp / "model.safetensors").write_bytes(bytes(4096))
        print(tmp, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
with atomic_path(target) as tmp:
    tmp.write_bytes(bytes(4096))
    print(tmp, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _killed_writers(run: Path, names: list[str]) -> list[Path]:
    """The temporaries of processes killed while writing ``names`` (in ``run``), as left."""
    left = []
    for name in names:
        kind = "dir" if name == "state" else "file"
        proc = subprocess.run(
            [sys.executable, "-c", _WRITER, str(run / name), kind],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        tmp = Path(proc.stdout.strip())
        assert tmp.parent == (run / name).parent and tmp.exists()
        left.append(tmp)
    return left


@pytest.mark.parametrize(("workers", "seed"), [(0, 0), pytest.param(2, 1, marks=pytest.mark.slow)])
def test_killed_in_an_epoch_and_resumed_equals_straight(tmp_path, workers, seed):
    cfg = _cfg(workers=workers)
    batches = 9  # 72 training items (9 of 12 slides) in batches of 8
    run = tmp_path / "killed"
    _kill_in_epoch_two(run, cfg, seed=seed, delay=0.1, batches=batches)
    done = load_state(run / "state").progress.epoch
    assert 1 <= done < 3  # killed before the end (epoch 2's state may have been written)
    # what a kill while saving leaves: the next state half-written beside the last one
    leftover = _killed_writers(run, ["state"])

    resumed = train(cfg, out=run, resume=True, progress=False)
    straight = train(cfg, out=tmp_path / "straight", progress=False)
    assert resumed.epochs_run == 3
    assert _differing(straight.out_dir, run) == []
    assert _rows(resumed.history) == _rows(straight.history)
    assert [p for p in leftover if p.exists()] == []


def test_the_next_run_clears_its_own_temporaries_only(tmp_path):
    cfg = _cfg(epochs=1)
    run = tmp_path / "run"
    train(cfg, out=run, progress=False)
    stale = _killed_writers(
        run, ["state", "log.json", "last/model.safetensors", "best/config.json"]
    )
    keep = [
        run / "notes.tmp",
        run / ".state.mine.tmp",  # not the 8-character pattern
        run / ".notes.txt.abcdefgh.mitokit.tmp.txt",  # not an output of the run
        run / "last" / ".model.safetensors.keep",
    ]
    for path in keep:
        path.write_text("mine")
    train(cfg, overrides=["train.epochs=2"], out=run, resume=True, progress=False)
    assert [p for p in stale if p.exists()] == []
    assert all(p.read_text() == "mine" for p in keep)


# --------------------------------------------------------------------------------------------
# the real tasks, tiny: shuffled or event-first samplers, flips and HED jitter, batch norm


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, Path]:
    from mitokit.data.synthetic import generate_patches
    from mitokit.data.synthetic.export import write_patch_dataset, write_tile_dataset
    from mitokit.data.synthetic.generate import generate_tiles

    root = tmp_path_factory.mktemp("tiny")
    tiles = ((t.image, t.cells) for t in generate_tiles(3, seed=0, size=256))
    write_tile_dataset(root / "tiles", tiles, seed=0)
    batch = generate_patches(24, seed=0, size=16)
    write_patch_dataset(root / "cells", batch.images, batch.cells, seed=0)
    return {"tiles": root / "tiles", "cells": root / "cells" / "labels.csv"}


def _task_cfg(task: str, data: dict[str, Path], workers: int) -> dict:
    if task == "patch_classifier":
        section = {"labels": str(data["cells"]), "folds": 0, "batch_size": 6}
    else:
        section = {"labels": str(data["tiles"]), "tile_size": 64, "stride": 64}
        section["epoch_length"] = 12
    return {
        "task": task,
        "model": {"input_size": 16},
        "data": section,
        "optim": {"lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 6, "num_workers": workers},
    }


@pytest.mark.slow  # a few seconds each alone, ten times that on a busy 2-core machine
@pytest.mark.parametrize(
    ("task", "workers"),
    [
        ("tile_classifier", 0),
        ("patch_classifier", 0),
        ("tile_regressor", 0),
        ("tile_classifier", 2),
        ("patch_classifier", 2),
    ],
)
def test_real_tasks_resume_bit_for_bit(tmp_path, tiny_data, task, workers):
    cfg = _task_cfg(task, tiny_data, workers)
    straight = train(cfg, out=tmp_path / "straight", progress=False)
    train(cfg, overrides=["train.epochs=1"], out=tmp_path / "cut", progress=False)
    resumed = train(cfg, out=tmp_path / "cut", resume=True, progress=False)
    assert _differing(straight.out_dir, resumed.out_dir) == []
    assert _rows(resumed.history) == _rows(straight.history)
