"""Patch classifier, BC and Reg / Reg-NS: model contract, weights, data, CLI predict / evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torch.utils.data import DataLoader

from mitokit.cli import cli
from mitokit.engines.task import get_task, known_tasks
from mitokit.errors import MitokitError
from mitokit.io.annotations import Annotation, AnnotationSet, ImageInfo, Vote, write_annotations
from mitokit.models.backbones import build_resnet
from mitokit.models.checkpoint import load_model, save_model
from mitokit.models.classifier import (
    PatchEnsemble,
    ensemble_configs,
    load_ensemble,
    predict_images,
)
from mitokit.types import MITOSIS, NON_MITOSIS

CPU = torch.device("cpu")
TASKS = ("patch_classifier", "tile_classifier", "tile_regressor")
SMALL = {"input_size": 32}  # resnet18 at 32 px keeps every test fast


def _cfg(task: str) -> dict:
    return {**get_task(task).model_defaults, **SMALL}


def _model(task: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_task(task).build_model(_cfg(task))


# --------------------------------------------------------------------------------------------
# Data fixtures


def _write_patches(root: Path, labels: list[int], *, size: int = 16, seed: int = 0) -> Path:
    """Dark (positive) and light (negative) noisy patches with three votes each."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    anns, info = [], {}
    for i, y in enumerate(labels):
        base = 80 if y else 170
        img = np.clip(rng.normal(base, 25, (size, size, 3)), 0, 255).astype(np.uint8)
        name = f"p{i:03d}.png"
        Image.fromarray(img).save(root / "images" / name)
        v = float(y)
        votes = (Vote("r1", v), Vote("r2", v), Vote("r3", 0.5))
        anns.append(
            Annotation(
                id=f"p{i:03d}",
                image=name,
                point=(size / 2, size / 2),
                label=MITOSIS if y else NON_MITOSIS,
                votes=votes,
            )
        )
        info[name] = ImageInfo(name, file_name=f"images/{name}", width=size, height=size)
    write_annotations(AnnotationSet(anns, info, ["r1", "r2", "r3"]), root / "labels.csv")
    return root / "labels.csv"


@pytest.fixture(scope="module")
def toy_patches(tmp_path_factory) -> Path:
    return _write_patches(tmp_path_factory.mktemp("toy"), [i % 2 for i in range(64)])


@pytest.fixture(scope="module")
def tile_folder(tmp_path_factory) -> Path:
    from mitokit.data.synthetic.export import write_tile_dataset
    from mitokit.data.synthetic.generate import generate_tiles

    root = tmp_path_factory.mktemp("tiles")
    tiles = ((t.image, t.cells) for t in generate_tiles(3, seed=0, size=500))
    write_tile_dataset(root, tiles, seed=0)
    return root


# --------------------------------------------------------------------------------------------
# Model contract


def test_tasks_registered():
    assert set(TASKS) <= set(known_tasks())


def test_resize_inside_model():
    model = build_resnet("resnet18", input_size=48).eval()
    x = torch.rand(2, 3, 20, 20)
    assert model.preprocess(x).shape == (2, 3, 48, 48)
    assert build_resnet("resnet18", input_size=None).preprocess(x).shape == (2, 3, 20, 20)
    with pytest.raises(MitokitError, match="unknown arch"):
        build_resnet("resnet101")


# --------------------------------------------------------------------------------------------
# Initial weights from a local file


def test_imagenet_style_safetensors_init(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(1)
    reference = torchvision.models.resnet18(weights=None)  # 1000-class fc, as ImageNet files
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    path = tmp_path / "resnet18_imagenet.safetensors"
    save_file(state, str(path))

    torch.manual_seed(7)
    random_init = build_resnet("resnet18", input_size=32)
    torch.manual_seed(7)
    model = build_resnet("resnet18", input_size=32, weights=path)
    for key, value in model.features.state_dict().items():
        assert torch.equal(value, state[key]), key
    # The 1000-class fc is skipped: the head is the random initialisation, not the file's.
    assert model.fc.weight.shape == (1, 512)
    assert torch.equal(model.fc.weight, random_init.fc.weight)
    assert not torch.equal(model.features.conv1.weight, random_init.features.conv1.weight)


def test_weights_file_with_wrong_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(MitokitError, match=r"other\.pth.*resnet18"):
        build_resnet("resnet18", weights=path)

    import torchvision

    deeper = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), deeper)
    with pytest.raises(MitokitError, match="unexpected keys"):
        build_resnet("resnet18", weights=deeper)


class _Payload:
    """An arbitrary object: torch.load(weights_only=True) must refuse to unpickle it."""


def test_weights_file_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "x": _Payload()}, path)
    with pytest.raises(MitokitError, match="only plain tensors"):
        build_resnet("resnet18", weights=path)
    with pytest.raises(MitokitError, match="not found"):
        build_resnet("resnet18", weights=tmp_path / "missing.safetensors")


def test_checkpoint_of_another_task_refused(tmp_path):
    save_model(
        _model("tile_regressor"),
        tmp_path / "reg",
        task="tile_regressor",
        model_cfg=_cfg("tile_regressor"),
    )
    expected = "is a 'tile_regressor' model, expected 'patch_classifier'"
    with pytest.raises(MitokitError, match=expected):
        load_model(tmp_path / "reg", expect_task="patch_classifier")
    with pytest.raises(MitokitError, match=expected):
        load_ensemble([tmp_path / "reg"])
    png = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(png)
    result = CliRunner().invoke(
        cli, ["predict", "patches", "--model", str(tmp_path / "reg"), str(png)]
    )
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------------------------
# Patch classifier data and training


def test_empty_class_is_an_error_before_training(tmp_path):
    labels = _write_patches(tmp_path, [0] * 12)
    with pytest.raises(MitokitError, match=r"class 'mitosis' has no training samples in .*labels"):
        get_task("patch_classifier").build_data({"labels": str(labels), "folds": 0}, seed=0)


def test_patch_classifier_learns_toy_task(toy_patches):
    task = get_task("patch_classifier")
    data = task.build_data(
        {"labels": str(toy_patches), "augment": False, "batch_size": 16, "folds": 0}, seed=0
    )
    assert data.batch_sampler and data.info["n_train"] == 64
    torch.manual_seed(0)
    model = task.build_model({"input_size": 32})
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(data.train, batch_sampler=data.train_sampler)
    model.train()
    for _ in range(2):
        for batch in loader:
            assert int(batch["label"].sum()) == 8  # balanced: half of 16
            loss, _ = task.loss(model, batch, device=CPU)
            opt.zero_grad()
            loss.backward()
            opt.step()
    figures = task.evaluate(model, DataLoader(data.train, batch_size=32), device=CPU)
    assert figures["auc"] > 0.9
    assert set(figures) >= {"loss", "auc", "balanced_accuracy", "ece"}


def test_soft_targets(toy_patches):
    task = get_task("patch_classifier")
    data = task.build_data(
        {"labels": str(toy_patches), "target": "soft", "batch_size": 8, "folds": 0}, seed=0
    )
    batch = next(iter(DataLoader(data.train, batch_sampler=data.train_sampler)))
    # Votes (1, 1, 0.5) and (0, 0, 0.5): soft targets 5/6 and 1/6, not 0/1.
    assert set(np.round(batch["target"].tolist(), 4)) == {round(5 / 6, 4), round(1 / 6, 4)}
    model = _model("patch_classifier")
    loss, _ = task.loss(model, batch, device=CPU)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0


def test_patch_split_by_group_and_augment(toy_patches):
    task = get_task("patch_classifier")
    data = task.build_data({"labels": str(toy_patches), "folds": 4, "fold": 1}, seed=3)
    assert not set(data.train.ids) & set(data.val.ids)
    assert len(data.train) + len(data.val) == 64
    item = data.train[0]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    with pytest.raises(MitokitError, match="unknown data key"):
        task.build_data({"labels": str(toy_patches), "batchsize": 8}, seed=0)


class _Draws(torch.utils.data.Dataset):
    """Each item is a draw of a PatchTransform's generator."""

    def __init__(self) -> None:
        from mitokit.models.classifier import PatchTransform

        self.transform = PatchTransform(augment=True, seed=3)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> float:
        return float(self.transform.draws.get().random())


def test_augmentation_streams_differ_per_worker_and_repeat_per_seed():
    def draws() -> list[float]:
        loader = DataLoader(
            _Draws(), batch_size=1, num_workers=2, generator=torch.Generator().manual_seed(0)
        )
        return [float(b) for b in loader]

    first = draws()
    assert first[0] != first[1]  # items 0 and 1 come from workers 0 and 1
    assert draws() == first


def test_ensemble_average_and_configs(tmp_path):
    a, b = _model("patch_classifier", 1), _model("patch_classifier", 2)
    x = torch.rand(4, 3, 16, 16)
    ens = PatchEnsemble([a, b]).eval()
    with torch.no_grad():
        expected = (torch.sigmoid(a.eval()(x)) + torch.sigmoid(b.eval()(x))) / 2
        assert torch.allclose(ens(x), expected)
    for i, (m, other) in enumerate(((a, b), (b, a))):
        # Training runs: seed<i>/best is the member, seed<i>/last is not.
        for name, module in (("best", m), ("last", other)):
            save_model(
                module,
                tmp_path / "ens" / f"seed{i}" / name,
                task="patch_classifier",
                model_cfg=_cfg("patch_classifier"),
            )
    loaded, cfgs = load_ensemble([tmp_path / "ens"])
    assert len(loaded) == 2 and len(cfgs) == 2
    with torch.no_grad():
        assert torch.allclose(loaded(x), expected, atol=1e-6)
    # Members load with their batch norm folded (same scores), unless told not to.
    norms = [m for m in loaded.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    unfolded, _ = load_ensemble([tmp_path / "ens"], fold_bn=False)
    assert not norms and any(isinstance(m, torch.nn.BatchNorm2d) for m in unfolded.modules())
    base = {"task": "patch_classifier", "train": {"seed": 5, "out": "runs/p", "epochs": 2}}
    configs = ensemble_configs(base, n=3)
    assert [c["train"]["seed"] for c in configs] == [5, 6, 7]
    assert [Path(c["train"]["out"]).name for c in configs] == ["seed0", "seed1", "seed2"]
    assert all(c["train"]["epochs"] == 2 for c in configs) and base["train"]["seed"] == 5
    # TTA of a flip-symmetric input gives the plain score.
    sym = np.full((16, 16, 3), 120, np.uint8)
    plain = predict_images(loaded, [sym])
    assert np.allclose(predict_images(loaded, [sym], tta=True), plain, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Tile data: events-first sampling, split by image


def _draw_scores(data) -> np.ndarray:
    tiles, _ = data.train_sampler.draws(0)
    return np.array([float(data.train.tiles.target(int(i))["tile_score"]) for i in tiles])


def test_reg_draws_positive_tiles_only(tile_folder):
    data = get_task("tile_regressor").build_data(
        {"labels": str(tile_folder), "val_fraction": 0}, seed=0
    )
    scores = _draw_scores(data)
    assert len(scores) > 0 and (scores > 0).all()


def test_reg_ns_ratio_two(tile_folder):
    data = get_task("tile_regressor").build_data(
        {"labels": str(tile_folder), "val_fraction": 0, "negative_ratio": 2, "epoch_length": 60},
        seed=0,
    )
    scores = _draw_scores(data)
    assert len(scores) == 60
    assert np.isclose((scores == 0).mean(), 2 / 3, atol=0.05)
    batch = next(iter(DataLoader(data.train, batch_size=4, sampler=data.train_sampler)))
    assert batch["image"].shape == (4, 3, 250, 250)
    assert torch.equal(batch["target"], batch["tile_score"])


def test_tiles_split_by_image(tile_folder):
    for task in ("tile_regressor", "tile_classifier"):
        data = get_task(task).build_data({"labels": str(tile_folder)}, seed=0)
        train_images = {t.image for t in data.train.tiles.tiles}
        val_images = {t.image for t in data.val.tiles.tiles}
        assert train_images and val_images and not train_images & val_images
        assert train_images == set(data.info["train_images"])
    with pytest.raises(MitokitError, match="negative_ratio >= 1"):
        get_task("tile_classifier").build_data(
            {"labels": str(tile_folder), "negative_ratio": 0}, seed=0
        )


def test_tile_evaluate_figures(tile_folder):
    task = get_task("tile_classifier")
    data = task.build_data({"labels": str(tile_folder)}, seed=0)
    figures = task.evaluate(
        _model("tile_classifier"), DataLoader(data.val, batch_size=16), device=CPU
    )
    assert figures["n"] == data.info["n_val_tiles"] and np.isfinite(figures["loss"])
    assert {"tpr", "fpr", "auc", "balanced_accuracy"} <= set(figures)


# --------------------------------------------------------------------------------------------
# CLI: predict and evaluate tiles


def _save(task: str, folder: Path) -> Path:
    save_model(_model(task), folder, task=task, model_cfg=_cfg(task))
    return folder


def test_predict_patches_cli(tmp_path, toy_patches):
    model = _save("patch_classifier", tmp_path / "m")
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(folder / f"x{i}.png")
    single = tmp_path / "single.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(single)
    out = tmp_path / "pred.csv"
    args = ["predict", "patches", "--model", str(model), str(folder), str(single)]
    result = CliRunner().invoke(cli, [*args, "--json", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert [Path(r["image"]).name for r in rows] == ["x0.png", "x1.png", "x2.png", "single.png"]
    assert all(0.0 <= r["score"] <= 1.0 for r in rows)
    with out.open() as fh:
        assert len(list(csv.DictReader(fh))) == 4
    # A label file as input: its patches, by object id; two models make an ensemble.
    result = CliRunner().invoke(
        cli,
        ["predict", "patches", "--model", str(model), "--model", str(model), str(toy_patches)],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "image,id,score" and len(lines) == 65


def test_predict_tiles_cli(tmp_path):
    model = _save("tile_regressor", tmp_path / "reg")
    Image.fromarray(np.full((300, 300, 3), 200, np.uint8)).save(tmp_path / "t.png")
    result = CliRunner().invoke(
        cli, ["predict", "tiles", "--model", str(model), str(tmp_path / "t.png"), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    boxes = sorted((r["x1"], r["y1"], r["x2"], r["y2"]) for r in rows)
    assert boxes == [(0, 0, 250, 250), (0, 50, 250, 300), (50, 0, 300, 250), (50, 50, 300, 300)]
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            "tiles",
            "--model",
            str(_save("patch_classifier", tmp_path / "p")),
            str(tmp_path / "t.png"),
        ],
    )
    assert (
        result.exit_code == 2 and "expected 'tile_classifier' or 'tile_regressor'" in result.output
    )


@pytest.fixture()
def hand_case(tmp_path):
    truth = AnnotationSet(
        [
            Annotation("a", "A.png", box=(10, 10, 60, 60), agreement=1.0),  # tile 1
            Annotation("b", "A.png", box=(300, 300, 350, 350), agreement=0.5),  # tile 4
            Annotation("c", "A.png", box=(400, 50, 450, 100), label=NON_MITOSIS),  # not counted
        ],
        {"A.png": ImageInfo("A.png", file_name="A.png", width=500, height=500)},
    )
    write_annotations(truth, tmp_path / "truth.json")
    pred = tmp_path / "pred.csv"
    pred.write_text(
        "image,x1,y1,x2,y2,score\n"
        "some/dir/A.png,0,0,250,250,0.9\n"
        "some/dir/A.png,250,0,500,250,0.6\n"
        "some/dir/A.png,0,250,250,500,0.2\n"
        "some/dir/A.png,250,250,500,500,0.4\n"
    )
    return pred, tmp_path / "truth.json"


def test_evaluate_tiles_hand_case(hand_case, tmp_path):
    pred, truth = hand_case
    fig = tmp_path / "roc.png"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "tiles",
            "--pred",
            str(pred),
            "--truth",
            str(truth),
            "--json",
            "--figure",
            str(fig),
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    # y = [1, 0, 0, 1], scores = [0.9, 0.6, 0.2, 0.4]
    assert out["auc"] == pytest.approx(0.75)
    assert out["balanced_accuracy"] == pytest.approx(0.5)
    rates = {r["threshold"]: (r["tpr"], r["fpr"]) for r in out["rows"]}
    assert rates[0.3] == (1.0, 0.5)
    assert rates[0.5] == (0.5, 0.5)
    assert rates[0.7] == (0.5, 0.0)
    assert rates[0.9] == (0.5, 0.0)
    assert len(out["table"]) == 9 and out["table"][4]["pred TPR"] == 0.5
    assert fig.stat().st_size > 0

    text = CliRunner().invoke(
        cli, ["evaluate", "tiles", "--pred", f"Reg={pred}", "--truth", str(truth)]
    )
    assert text.exit_code == 0 and "Reg TPR" in text.output and "AUC 0.750" in text.output


def test_evaluate_tiles_image_level(hand_case, tmp_path):
    _, truth = hand_case
    pred = tmp_path / "images.csv"
    pred.write_text("image,score\nA.png,0.7\n")
    result = CliRunner().invoke(
        cli, ["evaluate", "tiles", "--pred", str(pred), "--truth", str(truth), "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["methods"][0]["n_positive"] == 1 and out["auc"] is None  # one class: no AUC
    assert {r["threshold"]: r["tpr"] for r in out["rows"]}[0.7] == 1.0


def test_patch_split_file(toy_patches, tmp_path):
    split = tmp_path / "split.csv"
    split.write_text("id\n" + "".join(f"p{i:03d}\n" for i in range(0, 64, 2)) + "p001\n")
    data = get_task("patch_classifier").build_data(
        {"labels": str(toy_patches), "split": str(split), "folds": 0}, seed=0
    )
    assert sorted(data.train.ids) == sorted([f"p{i:03d}" for i in range(0, 64, 2)] + ["p001"])
    assert data.info["n_heldout"] == 31


def test_evaluate_tiles_errors(hand_case, tmp_path):
    pred, truth = hand_case
    bad = tmp_path / "bad.csv"
    bad.write_text("image,score\nB.png,0.3\n")
    result = CliRunner().invoke(
        cli, ["evaluate", "tiles", "--pred", str(bad), "--truth", str(truth)]
    )
    assert result.exit_code == 2 and "has no image 'B.png'" in result.output
    bad.write_text("img,score\nA.png,0.3\n")
    result = CliRunner().invoke(
        cli, ["evaluate", "tiles", "--pred", str(bad), "--truth", str(truth)]
    )
    assert result.exit_code == 2 and "header lacks image" in result.output


# --------------------------------------------------------------------------------------------
# Real data


def test_amibr_published_split(shared_data):
    root = shared_data / "amibr"
    from mitokit.io.annotations import read_annotations

    everything = {a.id for a in read_annotations(root / "AMI-BR.csv", format="amibr")}
    train_ids = {a.id for a in read_annotations(root / "amibr_train_split.csv", format="amibr")}
    test_ids = everything - train_ids
    assert len(test_ids) == 826
    data = get_task("patch_classifier").build_data(
        {
            "labels": str(root / "AMI-BR.csv"),
            "split": str(root / "amibr_train_split.csv"),
            "crop": 64,
        },
        seed=0,
    )
    used = set(data.train.ids) | set(data.val.ids)
    assert len(data.train) + len(data.val) == 2894 == len(used)
    assert not used & test_ids
    assert not set(data.train.groups) & set(data.val.groups)  # slides never split
    assert all("/" in g for g in data.train.groups)  # <dataset>/<slide>
    assert data.info["positive_class"] == "atypical"
    item = data.train[0]
    assert item["image"].shape == (3, 64, 64)
