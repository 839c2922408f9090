"""Reference-view targets: R's binary mask on white (the default) and the soft alternative."""

from __future__ import annotations

import pytest
import torch

from consistent123.case import Case
from consistent123.config import LossConfig


def _case() -> Case:
    # 4x4: a red half (alpha 1), a 30 % transparent green column, an empty column; depth 0.5 inside.
    rgba = torch.zeros(4, 4, 4)
    rgba[0, :, :2], rgba[3, :, :2] = 1.0, 1.0
    rgba[1, :, 2], rgba[3, :, 2] = 1.0, 0.3
    depth = torch.zeros(1, 4, 4)
    depth[0, :, :3] = 0.5
    return Case("c", rgba, depth, "a thing")


def test_the_default_is_the_authors_binary_mask():
    assert LossConfig().reference_targets == "binary"


def test_binary_targets_mask_at_half_alpha_and_put_the_background_outside():
    bg = torch.tensor([0.0, 0.0, 1.0])
    t = _case().targets(4, bg, "binary")
    assert t["mask"][..., 0][0].tolist() == [1.0, 1.0, 0.0, 0.0]  # alpha 0.3 is outside
    assert t["rgb"][0, 0].tolist() == [1.0, 0.0, 0.0]
    assert t["rgb"][0, 2].tolist() == [0.0, 0.0, 1.0]  # the background, not a 30 % blend
    assert t["valid_depth"][..., 0][0].tolist() == [True, True, False, False]


def test_binary_targets_average_pixels_when_shrinking_and_composite_on_white_first():
    rgba = torch.zeros(4, 2, 2)
    rgba[:, 0, 0] = torch.tensor([1.0, 0.0, 0.0, 1.0])  # red
    rgba[:, :, 1] = torch.tensor([0.0, 1.0, 0.0, 0.8])[:, None]  # green at alpha 0.8; (1, 0) empty
    t = Case("c", rgba, torch.full((1, 2, 2), 0.4), "x").targets(1, torch.zeros(3), "binary")
    # cv2 INTER_AREA averages each channel: rgb (0.25, 0.5, 0), alpha 0.65 -> inside, on white.
    assert t["mask"].item() == 1.0
    torch.testing.assert_close(t["rgb"][0, 0], torch.tensor([0.25, 0.5, 0.0]) * 0.65 + 0.35)
    assert t["depth"].item() == pytest.approx(0.4)


def test_soft_targets_keep_the_alpha():
    t = _case().targets(4, torch.tensor([0.0, 0.0, 1.0]), "soft")
    assert t["mask"][0, 2, 0].item() == pytest.approx(0.3)
    torch.testing.assert_close(t["rgb"][0, 2], torch.tensor([0.0, 0.3, 0.7]))
