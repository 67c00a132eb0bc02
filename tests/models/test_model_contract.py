"""One contract for every formulation the engine trains, over a registry of tiny configs.

Each entry says how to build a tiny model, a fixed training batch, a batch with no object at all
(an empty tile: no mitosis, no box, a negative image) and what inference returns. Every entry
then goes through the same checks: registered, inference output of the expected shape, a
save / load round trip that gives identical outputs, one optimiser step that lowers the loss on
its batch, and an empty tile that trains (finite loss, gradients). The per-model test files keep
what is particular to each model (weighted losses, offsets, samplers ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch

from mitokit.engines.task import get_task, known_tasks
from mitokit.models.checkpoint import load_model, save_model

CPU = torch.device("cpu")


@dataclass
class Case:
    """A tiny configuration of one task and the inputs of its contract."""

    task: str
    cfg: dict[str, Any]
    batch: Callable[[], Any]
    empty: Callable[[], Any]
    infer: Callable[[torch.nn.Module, Any], Any]
    shape: Callable[[Any], Any]
    lr: float = 1e-3
    optimizer: str = "adam"
    params: dict[str, Any] = field(default_factory=dict)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------ classifiers (tiles)


def _images(n: int = 8, size: int = 24, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=_generator(seed))


def _patch_batch(empty: bool = False) -> dict:
    label = torch.zeros(8, dtype=torch.int64) if empty else torch.arange(8) % 2
    return {"image": _images(), "target": label.float(), "label": label}


def _tile_batch(regression: bool, empty: bool = False) -> dict:
    label = torch.zeros(8, dtype=torch.int64) if empty else torch.arange(8) % 2
    target = label.float() * (1.3 if regression else 1.0)
    return {"image": _images(), "target": target, "tile_label": label, "tile_score": target}


def _logits(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return model(batch["image"])


# ----------------------------------------------------------------------------------- detector


def _det_batch(empty: bool = False, size: int = 64):
    g = _generator(0)
    images = [0.8 + 0.1 * torch.rand(3, size, size, generator=g) for _ in range(2)]
    nothing = {
        "boxes": torch.zeros((0, 4)),
        "labels": torch.zeros(0, dtype=torch.int64),
        "weights": torch.zeros(0),
    }
    if empty:
        return images, [dict(nothing), dict(nothing)]
    images[0][:, 10:30, 12:32] = 0.2
    images[0][:, 36:56, 30:50] = 0.3
    boxes = {
        "boxes": torch.tensor([[12.0, 10, 32, 30], [30, 36, 50, 56]]),
        "labels": torch.ones(2, dtype=torch.int64),
        "weights": torch.tensor([1.0, 0.25]),
    }
    return images, [boxes, dict(nothing)]


def _detections(model: torch.nn.Module, batch) -> list[dict[str, torch.Tensor]]:
    return model(batch[0])


def _det_shape(out) -> list[tuple[int, ...]]:
    assert all(set(o) == {"boxes", "labels", "scores"} for o in out)
    return [tuple(o["boxes"].shape[1:]) for o in out]


# ------------------------------------------------------------------------------ weak localiser


def _wss_batch(empty: bool = False) -> dict:
    images = _images(n=4, size=64)
    label = torch.zeros(4) if empty else torch.tensor([1.0, 0.0, 1.0, 0.0])
    if not empty:
        images[0, :, 20:34, 20:34] = 0.1
        images[2, :, 30:44, 10:24] = 0.1
    return {"image": images, "label": label}


def _wss_infer(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    logits, heat = model.localise(batch["image"])
    return logits, heat


# ---------------------------------------------------------------------------------- diffusion


def _diffusion_cfg() -> dict:
    from mitokit.models.diffusion import TINY_MODEL

    return {**TINY_MODEL, "sample_size": 16, "num_train_timesteps": 100}


def _diffusion_batch(empty: bool = False) -> dict:
    g = _generator(0)
    image = torch.full((8, 3, 16, 16), 0.9) if empty else torch.rand(8, 3, 16, 16, generator=g)
    return {"image": image, "condition": torch.rand(8, generator=g)}


def _denoised(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    x = batch["image"] * 2 - 1
    return model.sampling_net()(x, torch.tensor(5), batch["condition"])


CASES = {
    "patch_classifier": Case(
        "patch_classifier",
        {"input_size": 32},
        _patch_batch,
        lambda: _patch_batch(empty=True),
        _logits,
        lambda out: tuple(out.shape),
        lr=1e-5,  # the first paper's rate
    ),
    "tile_classifier": Case(
        "tile_classifier",
        {"input_size": 32},
        lambda: _tile_batch(False),
        lambda: _tile_batch(False, empty=True),
        _logits,
        lambda out: tuple(out.shape),
        lr=1e-5,
    ),
    "tile_regressor": Case(
        "tile_regressor",
        {"input_size": 32},
        lambda: _tile_batch(True),
        lambda: _tile_batch(True, empty=True),
        _logits,
        lambda out: tuple(out.shape),
        lr=1e-5,
    ),
    "detector": Case(
        "detector",
        {
            "arch": "resnet18",
            "trainable_layers": 2,
            "box_batch_size_per_image": 32,
            "rpn_post_nms_top_n_test": 50,
            "box_score_thresh": 0.0,
        },
        _det_batch,
        lambda: _det_batch(empty=True),
        _detections,
        _det_shape,
        lr=0.005,
        optimizer="sgd",
    ),
    "weak_localiser": Case(
        "weak_localiser",
        {"aggregation": "max"},
        _wss_batch,
        lambda: _wss_batch(empty=True),
        _wss_infer,
        lambda out: (tuple(out[0].shape), tuple(out[1].shape)),
        lr=1e-4,
    ),
    "diffusion": Case(
        "diffusion",
        {},  # filled by _diffusion_cfg (imports the model module)
        _diffusion_batch,
        lambda: _diffusion_batch(empty=True),
        _denoised,
        lambda out: tuple(out.shape),
    ),
}
EXPECTED_SHAPES = {
    "patch_classifier": (8,),
    "tile_classifier": (8,),
    "tile_regressor": (8,),
    "detector": [(4,), (4,)],
    "weak_localiser": ((4,), (4, 64, 64)),
    "diffusion": (8, 3, 16, 16),
}


def _cfg(case: Case) -> dict:
    cfg = _diffusion_cfg() if case.task == "diffusion" else case.cfg
    return {**get_task(case.task).model_defaults, **cfg}


def _model(case: Case, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_task(case.task).build_model(_cfg(case))


def _loss(case: Case, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(1)  # the same noise, proposals and dropout draws before and after a step
    return get_task(case.task).loss(model, batch, device=CPU)


def _outputs_equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_outputs_equal(a[k], b[k]) for k in a)
    return len(a) == len(b) and all(_outputs_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.fixture(params=sorted(CASES))
def case(request) -> Case:
    return CASES[request.param]


def test_the_registry_covers_every_registered_task():
    assert set(CASES) == {t for t in known_tasks() if not t.startswith("toy")}  # test plugins


def test_inference_output_has_the_expected_shape(case):
    model = _model(case).eval()
    with torch.no_grad():
        out = case.infer(model, case.batch())
    assert case.shape(out) == EXPECTED_SHAPES[case.task]


def test_save_load_round_trip_gives_identical_outputs(case, tmp_path):
    model = _model(case, seed=3).eval()
    save_model(model, tmp_path / "m", task=case.task, model_cfg=_cfg(case))
    loaded, cfg = load_model(tmp_path / "m", expect_task=case.task)
    assert cfg["task"] == case.task
    loaded.eval()
    batch = case.batch()
    with torch.no_grad():
        assert _outputs_equal(case.infer(model, batch), case.infer(loaded, batch))


def test_one_optimizer_step_lowers_the_loss(case):
    model = _model(case, seed=1).train()
    batch = case.batch()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (
        torch.optim.SGD(params, lr=case.lr)
        if case.optimizer == "sgd"
        else torch.optim.Adam(params, lr=case.lr)
    )
    before, logs = _loss(case, model, batch)
    assert all(np.isfinite(v) for v in logs.values())
    opt.zero_grad()
    before.backward()
    opt.step()
    after, _ = _loss(case, model, batch)
    assert float(after.detach()) < float(before.detach())


def test_an_empty_tile_trains(case):
    model = _model(case).train()
    loss, logs = _loss(case, model, case.empty())
    assert torch.isfinite(loss) and all(np.isfinite(v) for v in logs.values())
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
