"""The NeRF's moving average (train.ema_decay): torch_ema's warm-up, and the hand-over uses it."""

from __future__ import annotations

import pytest
import torch

from consistent123.config import TrainConfig, load_config
from consistent123.training.weight_average import weight_average


def test_the_default_is_the_authors_average_and_none_turns_it_off():
    assert (TrainConfig().ema_decay, TrainConfig().ema_every) == (0.95, 100)
    assert weight_average(torch.nn.Linear(1, 1), TrainConfig(ema_decay=None)) is None


def test_the_decay_warms_up_as_torch_ema_does():
    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    average = weight_average(layer, TrainConfig())
    expected = 0.0
    for n, value in enumerate([1.0, 2.0, 3.0], start=1):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update(layer.parameters())
        decay = min(0.95, (1 + n) / (10 + n))  # 0.18, 0.25, 0.31: the last epochs dominate
        expected = decay * expected + (1 - decay) * value
    average.copy_to(layer.parameters())
    assert layer.weight.item() == pytest.approx(expected)


def test_the_mesh_is_built_from_the_averaged_nerf(tmp_path):
    from consistent123.case import load_case
    from consistent123.priors.base import Priors
    from consistent123.testing import TINY_OVERRIDES, synthetic_case
    from consistent123.training.trainer import Trainer

    case = load_case(synthetic_case(tmp_path))
    cpu = torch.device("cpu")
    common = [*TINY_OVERRIDES, "train.use_priors=false", "train.nerf_iters=6", "train.mesh_iters=1"]
    averaged = Trainer(load_config(None, [*common, "train.ema_every=3"]), case, Priors(), cpu)
    last = Trainer(load_config(None, [*common, "train.ema_decay=null"]), case, Priors(), cpu)
    for trainer in (averaged, last):
        for _ in range(6):
            trainer.step()
    live = [p.detach().clone() for p in averaged.nerf.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(live, last.nerf.parameters()))  # same training so far
    averaged.step()
    last.step()
    shadow = averaged.nerf_average.shadow_params
    assert all(torch.equal(a, b) for a, b in zip(averaged.nerf.parameters(), shadow))
    assert not all(torch.equal(a, b) for a, b in zip(averaged.nerf.parameters(), live))
    assert all(torch.equal(a, b) for a, b in zip(last.nerf.parameters(), live))
