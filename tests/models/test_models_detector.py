"""The detector (Det, Det-NS, Det-WL, Det-NS-WL): detection contract, agreement-weighted loss,
weights files, data, validation, predictor and training through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
from torchvision.models.detection.roi_heads import fastrcnn_loss

from mitokit.cli import cli
from mitokit.engines.task import get_task, known_tasks
from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, write_annotations
from mitokit.models._common import apply_dihedral, dihedral_boxes
from mitokit.models.detector import (
    DETECTOR,
    build_detector,
    detect,
    point_scores,
    suppress_centres,
    weighted_fastrcnn_loss,
)
from mitokit.models.io import save_model
from mitokit.models.predictors import load_predictor

CPU = torch.device("cpu")
# resnet18, two trained stages, few sampled proposals: a forward-backward on 64 px tiles in
# a fraction of a second on one core.
TINY = {
    "arch": "resnet18",
    "trainable_layers": 2,
    "box_batch_size_per_image": 32,
    "rpn_post_nms_top_n_test": 50,
}


def _model(seed: int = 0, **changes) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_task(DETECTOR).build_model({**TINY, **changes})


def _batch(n: int = 2, size: int = 64, seed: int = 0):
    """Dark squares on light noise; tile 0 has two boxes (agreements 1 and 0.25), the others
    none."""
    g = torch.Generator().manual_seed(seed)
    images = [0.8 + 0.1 * torch.rand(3, size, size, generator=g) for _ in range(n)]
    images[0][:, 10:30, 12:32] = 0.2
    images[0][:, 36:56, 30:50] = 0.3
    targets = [
        {
            "boxes": torch.tensor([[12.0, 10, 32, 30], [30, 36, 50, 56]]),
            "labels": torch.ones(2, dtype=torch.int64),
            "weights": torch.tensor([1.0, 0.25]),
        }
    ]
    for _ in range(n - 1):
        targets.append(
            {
                "boxes": torch.zeros((0, 4)),
                "labels": torch.zeros(0, dtype=torch.int64),
                "weights": torch.zeros(0),
            }
        )
    return images, targets


def _losses(model, images, targets, seed: int = 0) -> dict[str, torch.Tensor]:
    """Training-mode losses with the proposal sampling seeded."""
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model(images, targets)


@pytest.fixture(scope="module")
def tile_folder(tmp_path_factory) -> Path:
    """Six generated 256 px tiles with crowd boxes (a higher mitotic share than the default)."""
    from mitokit.data.synthetic.export import write_tile_dataset
    from mitokit.data.synthetic.generate import generate_tiles
    from mitokit.data.synthetic.scene import SceneParams

    root = tmp_path_factory.mktemp("det-tiles")
    scene = SceneParams(mitotic_fraction=0.06)
    tiles = ((t.image, t.cells) for t in generate_tiles(6, seed=1, size=256, params=scene))
    write_tile_dataset(root, tiles, seed=1)
    return root


# --------------------------------------------------------------------------------------------
# Detection contract


def test_registered_with_engine_and_predictors():
    from mitokit.models.predictors import _FACTORIES

    assert DETECTOR in known_tasks() and DETECTOR in _FACTORIES


def test_output_contract_in_train_and_eval_mode():
    model = _model()
    images, targets = _batch(n=2)
    losses = _losses(model, images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for o in out:
        assert set(o) == {"boxes", "labels", "scores"}
        k = len(o["scores"])
        assert o["boxes"].shape == (k, 4) and o["labels"].shape == (k,)
        assert bool(((o["boxes"] >= 0) & (o["boxes"] <= 64)).all())
        assert bool((o["labels"] == 1).all())


def test_tiles_without_boxes_train():
    model = _model()
    images, targets = _batch(n=3)
    images, targets = images[1:], targets[1:]  # no object at all
    losses = _losses(model, images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    assert float(losses["loss_box_reg"].detach()) == 0.0
    assert float(losses["loss_classifier"].detach()) > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_no_pixels_are_resampled_by_default():
    model = _model().eval()
    image_list, _ = model.transform([torch.rand(3, 64, 48)])
    assert image_list.image_sizes == [(64, 48)]
    resized = _model(min_size=128).eval()
    # torchvision: the short side (48) becomes min_size; sizes are (height, width)
    assert resized.transform([torch.rand(3, 64, 48)])[0].image_sizes == [(170, 128)]


# --------------------------------------------------------------------------------------------
# Agreement-weighted classification loss


def test_weighted_loss_by_hand():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 2, generator=g)
    deltas = torch.randn(6, 8, generator=g)
    labels = [torch.tensor([1, 0, 0]), torch.tensor([1, 1, 0])]
    reg = [torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)]
    ref_cls, ref_box = fastrcnn_loss(logits, deltas, labels, reg)
    ones = [torch.ones(3), torch.ones(3)]
    cls, box = weighted_fastrcnn_loss(logits, deltas, labels, reg, ones)
    torch.testing.assert_close(cls, ref_cls)
    torch.testing.assert_close(box, ref_box)

    ce = torch.nn.functional.cross_entropy(logits, torch.cat(labels), reduction="none")
    pos = torch.cat(labels) > 0
    # Weights 0 on every positive: only the background terms, still divided by all 6.
    zero = [torch.tensor([0.0, 1, 1]), torch.tensor([0.0, 0, 1])]
    cls0, box0 = weighted_fastrcnn_loss(logits, deltas, labels, reg, zero)
    torch.testing.assert_close(cls0, ce[~pos].sum() / 6)
    assert float(cls0) < float(ref_cls)
    torch.testing.assert_close(box0, ref_box)  # the box regression is not weighted
    # Positives scaled by a: background part + a x positive part.
    for a in (0.25, 0.5, 2.0):
        scaled = [torch.tensor([a, 1, 1]), torch.tensor([a, a, 1])]
        cls_a, _ = weighted_fastrcnn_loss(logits, deltas, labels, reg, scaled)
        torch.testing.assert_close(cls_a, (ce[~pos].sum() + a * ce[pos].sum()) / 6)


def test_roi_heads_take_the_weight_of_the_matched_box():
    model = _model(agreement_weighted=True)
    heads = model.roi_heads
    gt = torch.tensor([[0.0, 0, 20, 20], [40, 40, 60, 60]])
    targets = [
        {
            "boxes": gt,
            "labels": torch.ones(2, dtype=torch.int64),
            "weights": torch.tensor([0.2, 0.7]),
        }
    ]
    proposals = [torch.tensor([[1.0, 1, 20, 20], [40, 41, 60, 60], [20, 0, 40, 20]])]
    torch.manual_seed(0)
    props, idx, labels, _, weights = heads.select_training_samples(proposals, targets)
    for box, i, lab, w in zip(props[0], idx[0], labels[0], weights[0], strict=True):
        if lab > 0:
            iou = (box - gt[i]).abs().max() <= 1.0
            assert iou and float(w) == pytest.approx([0.2, 0.7][int(i)])
        else:
            assert float(w) == 1.0
    assert {round(float(w), 3) for w in weights[0]} >= {0.2, 0.7, 1.0}
    heads.agreement_weighted = False
    torch.manual_seed(0)
    assert bool((heads.select_training_samples(proposals, targets)[4][0] == 1).all())


def test_weighting_changes_the_model_loss_only_where_weights_differ_from_one():
    images, targets = _batch(n=2)
    plain, weighted = _model(seed=0), _model(seed=0, agreement_weighted=True)
    ref = _losses(plain, images, targets)
    unit = [{**t, "weights": torch.ones_like(t["weights"])} for t in targets]
    for key, value in _losses(weighted, images, unit).items():
        torch.testing.assert_close(value, ref[key])
    low = _losses(weighted, images, targets)  # one box at agreement 0.25
    assert float(low["loss_classifier"].detach()) < float(ref["loss_classifier"].detach())
    torch.testing.assert_close(low["loss_box_reg"], ref["loss_box_reg"])
    torch.testing.assert_close(low["loss_objectness"], ref["loss_objectness"])
    # Det (not weighted) ignores the weights.
    for key, value in _losses(plain, images, targets).items():
        torch.testing.assert_close(value, ref[key])


# --------------------------------------------------------------------------------------------
# Weights files, save / load


def test_local_weights_backbone_or_whole_detector(tmp_path):
    import torchvision

    torch.manual_seed(3)
    resnet = torchvision.models.resnet18(weights=None)  # stands in for ImageNet weights
    save_file({k: v.contiguous() for k, v in resnet.state_dict().items()}, tmp_path / "r.st")
    (tmp_path / "r.st").rename(tmp_path / "r18.safetensors")
    model = _model(weights=str(tmp_path / "r18.safetensors"))
    torch.testing.assert_close(model.backbone.body.conv1.weight, resnet.conv1.weight)
    torch.testing.assert_close(
        model.backbone.body.layer1[0].bn1.running_var, resnet.layer1[0].bn1.running_var
    )
    assert model.trainable_layers == 2

    donor = _model(seed=4)
    torch.save(donor.state_dict(), tmp_path / "det.pth")  # tensors only: weights_only loads it
    loaded = _model(seed=5, weights=str(tmp_path / "det.pth"))
    for key, value in donor.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key

    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(MitokitError, match="r34.pth.*do not fit a resnet18 backbone"):
        _model(weights=str(tmp_path / "r34.pth"))
    with pytest.raises(MitokitError, match="not found"):
        _model(weights=str(tmp_path / "missing.pth"))


def test_bad_model_settings_are_errors():
    task = get_task(DETECTOR)
    with pytest.raises(MitokitError, match="unknown model key"):
        task.build_model({"archh": "resnet18"})
    with pytest.raises(MitokitError, match="unknown arch"):
        build_detector("resnet101")
    with pytest.raises(MitokitError, match="norm"):
        build_detector("resnet18", norm="group")
    with pytest.raises(MitokitError, match="trainable_layers"):
        build_detector("resnet18", trainable_layers=6)
    with pytest.raises(MitokitError, match="centre_suppression must be true or false"):
        build_detector("resnet18", centre_suppression="yes")


def test_centre_suppression_by_hand():
    boxes = torch.tensor(
        [
            [10.0, 10.0, 60.0, 60.0],  # 0.9: kept
            [30.0, 30.0, 40.0, 40.0],  # 0.8: nested in box 0 (IoU 0.04): dropped
            [58.0, 20.0, 108.0, 70.0],  # 0.7: overlaps box 0, centre outside it, box 0's
            # centre (35, 35) outside it: kept
            [0.0, 0.0, 200.0, 200.0],  # 0.6: holds the centre of box 0: dropped
            [150.0, 150.0, 160.0, 160.0],  # 0.5: alone: kept
        ]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = torch.ones(5, dtype=torch.int64)
    order = torch.tensor([4, 2, 0, 3, 1])  # any input order: highest score wins
    out = suppress_centres({"boxes": boxes[order], "scores": scores[order], "labels": labels})
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert torch.equal(out["boxes"], boxes[[0, 2, 4]]) and len(out["labels"]) == 3
    empty = suppress_centres({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)})
    assert empty["boxes"].shape == (0, 4)
    # detect applies it where the model asks for it (the default), else gives every box
    model = _model(box_score_thresh=0.0).eval()
    images, _ = _batch(n=1)
    with torch.no_grad():
        raw = model(images)[0]
    assert len(detect(model, images)[0]) == len(suppress_centres(raw)["boxes"]) < len(raw["boxes"])
    model.centre_suppression = False
    assert len(detect(model, images)[0]) == len(raw["boxes"])


# --------------------------------------------------------------------------------------------
# Data


def test_dihedral_boxes_follow_the_pixels():
    image = np.zeros((40, 60, 1))
    image[5:15, 20:45] = 1.0
    for k in range(4):
        for flip in (False, True):
            out = apply_dihedral(image, k, flip)
            ys, xs = np.nonzero(out[..., 0])
            box = dihedral_boxes([[20, 5, 45, 15]], k, flip, width=60, height=40)[0]
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], (k, flip)


def _point_labels(root: Path) -> Path:
    """Two 128 px images with point labels (no boxes, no agreement)."""
    (root / "images").mkdir(parents=True)
    anns, info = [], {}
    for i, points in enumerate([[(40.0, 40.0), (100.0, 90.0)], [(64.0, 64.0)]]):
        name = f"im{i}.png"
        Image.fromarray(np.full((128, 128, 3), 200, np.uint8)).save(root / "images" / name)
        info[name] = ImageInfo(name, file_name=name, width=128, height=128)
        anns += [Annotation(f"{name}/{j}", name, point=p) for j, p in enumerate(points)]
    write_annotations(AnnotationSet(anns, info), root / "points.csv")
    return root / "points.csv"


def test_point_labels_get_boxes_of_fixed_physical_size(tmp_path):
    labels = _point_labels(tmp_path)
    task = get_task(DETECTOR)
    common = {"labels": str(labels), "tile_size": 128, "stride": 128, "val_fraction": 0.0}
    data = task.build_data({**common, "augment": False}, seed=0)
    assert data.info["point_box_px"] == 50.0 and data.info["mpp"] == 0.25
    by_image = {data.train[i]["image_id"]: data.train[i] for i in range(len(data.train))}
    np.testing.assert_allclose(
        by_image["im1.png"]["boxes"].numpy(), [[39.0, 39.0, 89.0, 89.0]], atol=1e-5
    )
    assert by_image["im0.png"]["boxes"].shape == (2, 4)
    assert by_image["im0.png"]["weights"].tolist() == [1.0, 1.0]  # no agreement: weight 1
    half = task.build_data({**common, "augment": False, "mpp": 0.5}, seed=0)
    box = [half.train[i] for i in range(2) if half.train[i]["image_id"] == "im1.png"][0]["boxes"]
    np.testing.assert_allclose(box.numpy(), [[51.5, 51.5, 76.5, 76.5]], atol=1e-5)
    # Augmented tiles keep 50 px boxes around a turned centre.
    aug = task.build_data(common, seed=0)
    for i in range(len(aug.train)):
        item = aug.train[i]
        sides = (item["boxes"][:, 2:] - item["boxes"][:, :2]).numpy()
        np.testing.assert_allclose(sides, 50.0, atol=1e-4)


def test_data_split_by_image_and_negatives(tile_folder):
    task = get_task(DETECTOR)
    cfg = {"labels": str(tile_folder), "tile_size": 128, "stride": 64, "val_fraction": 0.34}
    det = task.build_data(cfg, seed=0)
    assert not set(det.info["train_images"]) & set(det.info["val_images"])
    assert det.info["labels"].endswith("crowd.json")
    tiles, events = det.train_sampler.draws(0)
    assert (events >= 0).all()  # Det: positive tiles only
    ns = task.build_data({**cfg, "negative_ratio": 2}, seed=0)
    tiles, events = ns.train_sampler.draws(0)
    assert (events < 0).sum() == 2 * (events >= 0).sum()
    for t in tiles[events < 0][:5]:
        assert ns.train.tiles.target(int(t))["boxes"].shape == (0, 4)
    item = ns.val[0]
    assert item["truth"].ndim == 2 and item["truth"].shape[1] == 2
    with pytest.raises(MitokitError, match="data.labels is required"):
        task.build_data({}, seed=0)


# --------------------------------------------------------------------------------------------
# Validation and prediction


def test_point_scores_by_hand():
    pred = {"a": np.array([[10.0, 10, 0.9], [50, 50, 0.4]]), "b": np.array([[5.0, 5, 0.8]])}
    truth = {"a": np.array([[12.0, 10], [90, 90]]), "b": np.zeros((0, 2))}
    s = point_scores(pred, truth, radius_px=5.0, threshold=0.5)
    assert (s["tp"], s["fp"], s["fn"]) == (1.0, 1.0, 1.0)  # at 0.5: (10, 10) hits, (5, 5) misses
    assert s["f1"] == pytest.approx(0.5)
    assert s["best_f1"] == pytest.approx(2 / 3) and s["best_threshold"] == pytest.approx(0.9)
    empty = point_scores({}, {"a": np.array([[1.0, 1]])}, radius_px=5.0, threshold=0.5)
    assert empty["f1"] == 0.0 and np.isnan(empty["best_threshold"])


def test_evaluate_leaves_model_and_random_streams_alone(tile_folder):
    from mitokit.data.datasets import collate_detection

    task = get_task(DETECTOR)
    data = task.build_data(
        {"labels": str(tile_folder), "tile_size": 128, "stride": 128, "val_fraction": 0.34},
        seed=0,
    )
    model = _model()
    batches = [collate_detection([data.val[i] for i in range(2)])]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    model.eval()
    first = task.evaluate(model, batches, device=CPU)
    second = task.evaluate(model, batches, device=CPU)
    assert first == pytest.approx(second, nan_ok=True)  # the loss pass is seeded
    assert torch.equal(rng, torch.get_rng_state()) and not model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert {"loss", "loss_classifier", "f1", "best_f1", "precision", "recall"} <= set(first)
    assert np.isfinite(first["loss"]) and first["best_f1"] >= first["f1"]


def test_predictor_returns_box_centres_in_tile_pixels(tmp_path):
    model = _model(box_score_thresh=0.0).eval()
    cfg = {**TINY, "box_score_thresh": 0.0}
    extra = {"data": {"tile_size": 64, "mpp": 0.25}}
    save_model(model, tmp_path / "m", task=DETECTOR, model_cfg=cfg, extra=extra)
    predictor = load_predictor(tmp_path / "m")
    assert (predictor.task, predictor.tile_size, predictor.mpp) == (DETECTOR, 64, 0.25)
    images, _ = _batch(n=2)
    batch = torch.stack(images)
    preds = predictor.predict(batch)
    with torch.no_grad():
        raw = [suppress_centres(r) for r in model(list(batch))]
    for p, r in zip(preds, raw, strict=True):
        boxes = r["boxes"].numpy()
        np.testing.assert_allclose(p.points[:, 0], (boxes[:, 0] + boxes[:, 2]) / 2, rtol=1e-6)
        np.testing.assert_allclose(p.points[:, 1], (boxes[:, 1] + boxes[:, 3]) / 2, rtol=1e-6)
        np.testing.assert_allclose(p.points[:, 2], r["scores"].numpy(), rtol=1e-6)
        assert ((p.points[:, :2] >= 0) & (p.points[:, :2] <= 64)).all()
        assert p.tile_score == pytest.approx(float(r["scores"].max()) if len(boxes) else 0.0)


# --------------------------------------------------------------------------------------------
# Training through the CLI


def test_train_cli_tiny_config(tile_folder, tmp_path):
    import yaml

    cfg = {
        "task": DETECTOR,
        "model": {**TINY, "agreement_weighted": True},
        "data": {
            "labels": str(tile_folder),
            "tile_size": 128,
            "stride": 128,
            "negative_ratio": 1,
            "val_fraction": 0.34,
            "epoch_length": 4,
        },
        "optim": {"name": "sgd", "lr": 0.005, "momentum": 0.9, "weight_decay": 1e-4},
        "train": {"epochs": 1, "batch_size": 2, "log_every": 0},
    }
    path = tmp_path / "det.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(path), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    log = json.loads((out / "log.json").read_text())
    assert len(log) == 1 and np.isfinite(log[0]["val_loss"]) and "val_best_f1" in log[0]
    assert log[0]["train_items"] == 4
    saved = json.loads((out / "best" / "config.json").read_text())
    assert saved["extra"]["data"]["mpp"] == 0.25 and saved["model"]["agreement_weighted"] is True
    predictor = load_predictor(out / "best")
    assert predictor.tile_size == 128 and predictor.mpp == 0.25
    assert len(predictor.predict(torch.rand(1, 3, 128, 128))) == 1


# --------------------------------------------------------------------------------------------
# Slow: learning


@pytest.mark.slow
def test_det_ns_wl_learns_mitoses_on_generated_tiles(tmp_path):
    """Det-NS-WL for four epochs (about 5 minutes on two cores): point F1 on held-out tiles well
    above a blind guess (about 0.08 with these settings)."""
    from mitokit.experiments.detection_study import det_variants

    result = det_variants(tmp_path / "study", seed=0, variants=("Det-NS-WL",), epochs=4, threads=2)
    m = result["variants"]["Det-NS-WL"]
    chance = result["chance_f1"]
    assert m["best_f1"] > max(0.3, 2 * chance), (m, chance)


# --------------------------------------------------------------------------------------------
# The detection study


def test_det_variants_cli_and_settings_check(tmp_path):
    from mitokit.experiments.detection_study import det_variants

    result = CliRunner().invoke(cli, ["experiment", "synthetic", "det-variants", "--help"])
    assert result.exit_code == 0 and "Det-NS-WL" in result.output
    with pytest.raises(MitokitError, match="variants must be among"):
        det_variants(tmp_path / "x", variants=("Det-XL",))
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_det_variants_tiny_run_writes_the_table(tmp_path):
    from mitokit.experiments.detection_study import det_variants

    out = tmp_path / "study"
    result = det_variants(
        out,
        seed=3,
        epochs=1,
        n_train_tiles=4,
        n_test_tiles=1,
        tile_size=192,
        sub_tile=64,
        stride=64,
        epoch_length=2,
        batch_size=2,
        box_batch_size_per_image=32,
        slides=1,
        slide_size=256,
        threads=1,
        device="cpu",
    )
    assert list(result["variants"]) == ["Det", "Det-NS", "Det-WL", "Det-NS-WL"]
    for m in result["variants"].values():  # the slide pass keeps boxes from 0.05 up
        sl = m["slides"]
        assert sl["threshold"] == pytest.approx(m["threshold"])
        assert sl["slide_pass_threshold"] == min(0.05, m["threshold"])
        assert sl["tp"] + sl["fn"] == sl["n_truth"] and sl["n_slides"] == 1
    flags = [
        (m["negative_ratio"] > 0, m["agreement_weighted"]) for m in result["variants"].values()
    ]
    assert flags == [(False, False), (True, False), (False, True), (True, True)]
    for m in result["variants"].values():
        assert 0.0 <= m["f1"] <= m["best_f1"] + 1e-12 <= 1.0 + 1e-12
    assert (out / "table.csv").read_text().startswith("variant,negative_ratio")
    assert "slide_f1" in (out / "table.csv").read_text().splitlines()[0]
    assert json.loads((out / "result.json").read_text())["study"] == "det_variants"
    assert not set(result["split"]["train_images"]) & set(result["split"]["val_images"])
