"""The conditional diffusion model: contract, EMA, condition embedding, data, engine training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _tiny_diffusion import TINY, tiny_model, write_cells

from mitokit.engines.task import get_task, known_tasks
from mitokit.errors import MitokitError
from mitokit.interpret import generate_transitions
from mitokit.models.checkpoint import load_model, save_model
from mitokit.models.diffusion import (
    DiffusionModel,
    jitter_conditions,
    load_diffusion,
    random_dihedral,
)

CPU = torch.device("cpu")


def _batch(n: int = 8, size: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(n, 3, size, size, generator=g),
        "condition": torch.rand(n, generator=g),
    }


def _seeded_loss(task, model, batch, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)  # the same noise, timesteps and dropout draws
    return task.loss(model, batch, device=CPU)[0]


def test_task_is_registered_and_forward_has_the_image_shape():
    assert "diffusion" in known_tasks()
    model = tiny_model()
    assert isinstance(model, DiffusionModel)
    x = torch.randn(3, 3, 16, 16)
    out = model.sampling_net()(x, torch.tensor(5), torch.tensor([0.0, 0.5, float("nan")]))
    assert out.shape == x.shape


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_one_training_step_lowers_the_loss_on_a_fixed_batch(prediction_type):
    task = get_task("diffusion")
    model = tiny_model(prediction_type=prediction_type).train()
    batch = _batch()
    before = _seeded_loss(task, model, batch)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    opt.zero_grad()
    before.backward()
    opt.step()
    after = _seeded_loss(task, model, batch)
    assert after.item() < before.detach().item()


def test_ema_is_frozen_in_the_state_dict_and_follows_the_trained_weights():
    task = get_task("diffusion")
    model = tiny_model().train()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert not any(id(p) in trainable for p in model.ema.parameters())
    assert any(k.startswith("ema.") for k in model.state_dict())
    assert not model.ema.training  # the average stays in eval mode
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = _seeded_loss(task, model, _batch())
    opt.zero_grad()
    loss.backward()
    opt.step()
    w_net = model.net.unet.conv_in.weight.detach().clone()
    w_ema_before = model.ema.unet.conv_in.weight.detach().clone()
    task.after_step(model)
    assert int(model.ema_updates) == 1
    # first update: decay min(0.9999, 1/10) = 0.1, so the average moves 90% of the way
    expected = w_ema_before + 0.9 * (w_net - w_ema_before)
    torch.testing.assert_close(model.ema.unet.conv_in.weight, expected)


def test_without_ema_the_trained_weights_sample():
    model = tiny_model(ema=False)
    assert model.ema is None and model.sampling_net() is model.net
    model.update_ema()  # a no-op


def test_condition_is_a_continuous_embedding_with_a_learned_null():
    net = tiny_model().net
    c = torch.tensor([0.0, 0.3, 0.31, float("nan")])
    emb = net.embed_condition(c, None)
    assert not torch.allclose(emb[1], emb[2])  # nearby values, different embeddings
    torch.testing.assert_close(emb[3], net.null_embedding)  # NaN -> null
    masked = net.embed_condition(c, torch.tensor([True, False, False, False]))
    torch.testing.assert_close(masked[0], net.null_embedding)


def test_null_embedding_gets_a_gradient_even_when_nothing_is_dropped():
    task = get_task("diffusion")
    model = tiny_model(cond_dropout=0.0).train()
    _seeded_loss(task, model, _batch()).backward()
    assert model.net.null_embedding.grad is not None  # DDP needs every weight in the graph


def test_save_load_round_trip_gives_identical_samples(tmp_path):
    model = tiny_model(seed=3)
    save_model(model, tmp_path / "m", task="diffusion", model_cfg=TINY)
    loaded, cfg = load_model(tmp_path / "m", expect_task="diffusion")
    assert cfg["task"] == "diffusion"
    a = generate_transitions(model, 2, [0.0, 1.0], scheduler="ddpm", steps=5, seed=1)
    b = generate_transitions(loaded, 2, [0.0, 1.0], scheduler="ddpm", steps=5, seed=1)
    np.testing.assert_array_equal(a.images, b.images)
    again, _ = load_diffusion(tmp_path / "m")
    assert isinstance(again, DiffusionModel)


def test_bad_model_settings_are_one_line_errors():
    task = get_task("diffusion")
    with pytest.raises(MitokitError, match="prediction_type"):
        task.build_model({**TINY, "prediction_type": "sample"})
    with pytest.raises(MitokitError, match="down_block_types"):
        task.build_model({**TINY, "down_block_types": ["DownBlock2D"]})
    with pytest.raises(MitokitError, match="divisible"):
        task.build_model({**TINY, "sample_size": 15})
    with pytest.raises(MitokitError, match="unknown model key"):
        task.build_model({**TINY, "channels": 3})
    with pytest.raises(MitokitError, match="cond_jitter"):
        task.build_model({**TINY, "cond_jitter": 0.7})


def test_weights_file_initialises_the_model(tmp_path):
    model = tiny_model(seed=5)
    save_model(model, tmp_path / "m", task="diffusion", model_cfg=TINY)
    again = get_task("diffusion").build_model({**TINY, "weights": str(tmp_path / "m")})
    for (k, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


# --------------------------------------------------------------------------------------------
# data


def test_build_data_reads_soft_majority_and_column_conditions(tmp_path):
    labels = write_cells(tmp_path / "cells", n=6, size=16)
    task = get_task("diffusion")
    soft = task.build_data({"labels": str(labels), "augment": False}, seed=0)
    item = soft.train[0]
    assert item["image"].shape == (3, 16, 16) and 0.0 <= float(item["condition"]) <= 1.0
    assert soft.val is None and soft.info["n_train"] == 6
    major = task.build_data({"labels": str(labels), "condition": "majority"}, seed=0)
    assert set(major.train.targets["condition"].tolist()) <= {0.0, 1.0}
    col = task.build_data({"labels": str(labels), "condition": "m"}, seed=0)
    manifest = json.loads((tmp_path / "cells" / "manifest.json").read_text())
    truth = {f"patch_{o['id']:06d}": o["m"] for o in manifest["objects"]}
    got = dict(zip(col.train.ids, col.train.targets["condition"].tolist(), strict=True))
    for oid, m in got.items():
        assert m == pytest.approx(truth[oid], abs=1e-3)
    with pytest.raises(MitokitError, match="no value in column 'nope'"):
        task.build_data({"labels": str(labels), "condition": "nope"}, seed=0)
    with pytest.raises(MitokitError, match="data.labels is required"):
        task.build_data({}, seed=0)


def test_a_column_outside_0_1_is_refused(tmp_path):
    from mitokit.io.annotations import read_annotations, write_annotations

    labels = write_cells(tmp_path / "cells", n=4, size=16)
    anns = read_annotations(labels)
    for a in anns:
        a.extra["size_um"] = 12.5
    write_annotations(anns, labels)
    with pytest.raises(MitokitError, match="outside \\[0, 1\\]"):
        get_task("diffusion").build_data({"labels": str(labels), "condition": "size_um"}, seed=0)


def test_training_through_the_engine_updates_the_ema_every_step(tmp_path):
    from mitokit.engines.train import train

    labels = write_cells(tmp_path / "cells", n=6, size=16)
    cfg = {
        "task": "diffusion",
        "model": TINY,
        "data": {"labels": str(labels)},
        "optim": {"lr": 1e-3},
        "train": {"epochs": 2, "batch_size": 4, "device": "cpu", "num_workers": 0},
    }
    result = train(cfg, out=tmp_path / "run", progress=False)
    assert result.epochs_run == 2
    model, _ = load_model(result.model_dir, expect_task="diffusion")
    assert int(model.ema_updates) == 4  # 2 epochs x 2 steps: the engine's after_step hook
    assert np.isfinite(result.history[-1]["train_loss"])


def _engine_config(labels, epochs: int = 2) -> dict:
    return {
        "task": "diffusion",
        "model": TINY,
        "data": {"labels": str(labels)},
        "optim": {"lr": 1e-3},
        "train": {"epochs": epochs, "batch_size": 4, "device": "cpu"},
    }


def test_a_resumed_run_ends_with_the_same_weights_and_average(tmp_path):
    from safetensors.torch import load_file

    from mitokit.engines.train import train

    labels = write_cells(tmp_path / "cells", n=6, size=16)
    train(_engine_config(labels), out=tmp_path / "a", progress=False)
    train(_engine_config(labels, epochs=1), out=tmp_path / "b", progress=False)
    train(_engine_config(labels), out=tmp_path / "b", resume=True, progress=False)
    a = load_file(str(tmp_path / "a" / "last" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("ema.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_process_ddp_training(tmp_path):
    """torchrun, gloo: the frozen average and the null embedding do not trouble DDP."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.is_file():
        pytest.skip(f"no torchrun beside {sys.executable}")
    labels = write_cells(tmp_path / "cells", n=8, size=16)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "dpm.yaml"
    cfg.write_text(yaml.safe_dump({**_engine_config(labels), "model": dict(TINY)}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(port), "-m", "mitokit", "train", str(cfg), "--no-progress"]
    cmd += ["--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model, _ = load_model(tmp_path / "run" / "best", expect_task="diffusion")
    assert int(model.ema_updates) == 2  # 2 epochs x (8 items / 2 ranks / batch 4) steps


def test_random_dihedral_keeps_masked_items_and_permutes_pixels():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    y = random_dihedral(x, torch.tensor([False, True]))
    assert torch.equal(y[0], x[0])
    assert torch.equal(y[1].flatten().sort().values, x[1].flatten().sort().values)
    seen = {tuple(random_dihedral(x[1:]).flatten().tolist()) for _ in range(64)}
    assert len(seen) == 8  # all eight symmetries occur


def test_jittered_conditions_are_reflected_into_0_1_not_clipped():
    torch.manual_seed(0)
    c = torch.tensor([0.0, 1.0, 0.5]).repeat(20000)
    assert torch.equal(jitter_conditions(c, 0.0), c)
    x = jitter_conditions(c, 0.2).reshape(-1, 3)
    lo, hi, mid = x[:, 0], x[:, 1], x[:, 2]
    # reflected at 0: |U(-0.2, 0.2)| is uniform on [0, 0.2] (mean 0.1, none pinned at 0;
    # clipping would put half of them at exactly 0 and give a mean of 0.05)
    assert lo.min() >= 0 and lo.max() <= 0.2 and abs(lo.mean().item() - 0.1) < 0.003
    assert (lo == 0).float().mean() < 0.001
    assert hi.min() >= 0.8 and hi.max() <= 1 and abs(hi.mean().item() - 0.9) < 0.003
    assert mid.min() >= 0.3 and mid.max() <= 0.7 and abs(mid.mean().item() - 0.5) < 0.003
    # uniform within the band: each quarter of [0.3, 0.7] holds about a quarter
    quarters = torch.histc(mid, bins=4, min=0.3, max=0.7) / len(mid)
    assert torch.allclose(quarters, torch.full((4,), 0.25), atol=0.02)


def test_training_loss_sees_conditions_jittered_by_the_model_setting():
    task = get_task("diffusion")
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, xt, t, c, null=None):
            seen.append(c.detach().clone())
            return self.model(xt, t, c, null)

        def __getattr__(self, name):
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.model, name)

    batch = {"image": torch.rand(64, 3, 16, 16), "condition": torch.full((64,), 1 / 3)}
    for width, spread in ((0.0, False), (1 / 6, True)):
        seen.clear()
        model = tiny_model(cond_jitter=width)
        task.loss(Spy(model), batch, device=CPU)
        c = seen[-1]
        assert bool((c - 1 / 3).abs().max() > 0.05) is spread
        assert float((c - 1 / 3).abs().max()) <= width + 1e-6
