"""Batch norm folded into convolutions for inference: same function, fewer layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from mitokit.errors import MitokitError
from mitokit.models.inference import fold_batchnorm


def _random_stats(model: nn.Module) -> nn.Module:
    """Running statistics and affine parameters far from the identity, so a wrong fold shows."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) and m.running_mean is not None:
            n = m.running_mean.numel()
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


def _norms(model: nn.Module) -> int:
    return sum(isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)) for m in model.modules())


def test_resnet_tile_classifier_folds_every_norm_and_keeps_its_outputs():
    from mitokit.engines.task import get_task

    torch.manual_seed(0)
    model = _random_stats(get_task("tile_classifier").build_model({"arch": "resnet18"}))
    x = torch.rand(3, 3, 96, 96)
    with torch.no_grad():
        before = model(x)
        assert fold_batchnorm(model) == 20  # conv1 + 8 blocks x 2 + 3 downsamples
        after = model(x)
    assert _norms(model) == 0
    assert before.abs().max() > 0.1  # a real signal, not a constant
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)
    assert fold_batchnorm(model) == 0  # nothing left to fold


def test_weak_localiser_folds_inside_an_untraceable_forward():
    from mitokit.engines.task import get_task

    torch.manual_seed(0)
    model = _random_stats(get_task("weak_localiser").build_model({}))
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        image_before, maps_before = model.forward_maps(x)
        # Its forward checks the input's shape (no trace): the trunk is folded as a child,
        # through the layer-3 cut (conv1 + layer1 4 + layer2 5 + layer3 5).
        assert fold_batchnorm(model) == 15
        image_after, maps_after = model.forward_maps(x)
    assert type(model).__name__ == "WeakLocaliser" and hasattr(model, "localise")
    torch.testing.assert_close(maps_after, maps_before, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(image_after, image_before, atol=1e-4, rtol=1e-4)


class _Mixed(nn.Module):
    """Four conv -> norm pairs of which only the first may fold."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.n1 = nn.Conv2d(3, 4, 3, padding=1), FrozenBatchNorm2d(4)
        self.c2, self.n2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)  # conv output reused
        self.c3 = nn.Conv2d(4, 4, 1)
        self.n3 = nn.BatchNorm2d(4, track_running_stats=False)  # batch statistics: no fold
        self.c4, self.n4 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)  # conv called twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.n1(self.c1(x))
        y = self.c2(x)
        x = self.n2(y) + y
        x = self.n3(self.c3(x))
        return self.n4(self.c4(x)) + self.c4(x)


def test_only_pairs_whose_conv_feeds_nothing_else_fold():
    torch.manual_seed(0)
    model = _random_stats(_Mixed())
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        assert fold_batchnorm(model) == 1
        after = model(x)
    assert isinstance(model.n1, nn.Identity)
    assert isinstance(model.n2, nn.BatchNorm2d) and isinstance(model.n4, nn.BatchNorm2d)
    assert isinstance(model.n3, nn.BatchNorm2d)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-4)


def test_folded_conv_by_hand():
    conv = nn.Conv2d(1, 1, 1, bias=True)
    norm = nn.BatchNorm2d(1)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        conv.bias.fill_(1.0)
        norm.running_mean.fill_(3.0)
        norm.running_var.fill_(4.0 - norm.eps)  # sqrt(var + eps) = 2
        norm.weight.fill_(5.0)
        norm.bias.fill_(-1.0)
    model = nn.Sequential(conv, norm).eval()
    assert fold_batchnorm(model) == 1
    # y = 5 * (2x + 1 - 3) / 2 - 1 = 5x - 6
    assert model[0].weight.item() == pytest.approx(5.0)
    assert model[0].bias.item() == pytest.approx(-6.0)
    assert isinstance(model[1], nn.Identity)


def test_training_mode_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    with pytest.raises(MitokitError, match="eval mode"):
        fold_batchnorm(model)
    assert isinstance(model[1], nn.BatchNorm2d)


def test_load_predictor_folds_unless_told_not_to(tmp_path):
    from mitokit.engines.task import get_task
    from mitokit.models.checkpoint import save_model
    from mitokit.models.predictors import load_predictor

    torch.manual_seed(0)
    model_cfg = {"arch": "resnet18", "input_size": None}
    model = _random_stats(get_task("tile_classifier").build_model(model_cfg))
    folder = save_model(
        model, tmp_path / "bc", task="tile_classifier", model_cfg=model_cfg,
        extra={"data": {"tile_size": 64}},
    )  # fmt: skip
    folded, plain = load_predictor(folder), load_predictor(folder, fold_bn=False)
    assert _norms(folded.model) == 0 and _norms(plain.model) == 20
    x = torch.rand(4, 3, 64, 64)
    a = [p.tile_score for p in folded.predict(x)]
    b = [p.tile_score for p in plain.predict(x)]
    assert a == pytest.approx(b, abs=1e-5)
    assert max(b) - min(b) > 1e-4  # the tiles score differently


def test_faster_rcnn_backbone_folds_and_detects_the_same():
    from mitokit.engines.task import get_task

    torch.manual_seed(0)
    model = _random_stats(get_task("detector").build_model({}))
    model.roi_heads.score_thresh = 0.0  # an untrained head: keep every box
    x = [torch.rand(3, 128, 128)]
    with torch.no_grad():
        before = model(x)[0]
        assert fold_batchnorm(model) == 53  # every norm layer of the ResNet-50 trunk
        after = model(x)[0]
    assert len(before["boxes"]) > 0
    torch.testing.assert_close(after["boxes"], before["boxes"], atol=1e-2, rtol=1e-4)
    torch.testing.assert_close(after["scores"], before["scores"], atol=1e-4, rtol=1e-3)
