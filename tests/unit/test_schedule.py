"""Boundary judgement and dynamic-prior weights against spec §5-§6, computed independently."""

import math

import pytest

from consistent123.config import BoundaryConfig, DynamicConfig
from consistent123.training.schedule import (
    BoundaryJudge,
    blend_weights,
    fixed_switch_iteration,
    judge_sequence,
    prior_weights,
    stage2_progress,
)


def _scores(values, start=0, every=20):
    return [(start + every * k, v) for k, v in enumerate(values)]


def test_switch_at_first_check_whose_windowed_mean_rate_is_below_delta():
    cfg = BoundaryConfig(every=20, window=3, delta=0.01, least_3d_only=100, most_3d_only=10_000)
    # S rises fast (rates 0.1) then flattens (rate 0.001 each).
    values = [0.20, 0.22, 0.242, 0.2662] + [0.2662 * 1.001**k for k in range(1, 10)]
    judge = judge_sequence(_scores(values, start=100), cfg)
    rates = [(b - a) / a for a, b in zip(values, values[1:])]
    # Independent computation: first k (>= window rates available) with |mean(last 3 rates)| < delta.
    expected = next(
        100 + 20 * (i + 1) for i in range(len(rates)) if i + 1 >= 3 and abs(sum(rates[i - 2 : i + 1]) / 3) < 0.01
    )
    assert judge.t_switch == expected and not judge.forced
    last = judge.checks[-1]
    assert last.iteration == expected
    n = len(judge.checks) - 1  # change rates seen up to the switch
    assert last.moving_average == pytest.approx(sum(rates[n - 3 : n]) / 3)


def test_no_check_before_window_and_forced_switch_at_most():
    cfg = BoundaryConfig(every=10, window=2, delta=1e-6, least_3d_only=50, most_3d_only=120)
    values = [0.1 * 1.5**k for k in range(20)]  # always changing fast: never below delta
    judge = judge_sequence(_scores(values, start=0, every=10), cfg)
    assert judge.t_switch == 120 and judge.forced
    assert [c.iteration for c in judge.checks] == list(range(50, 120, 10))


def test_abs_versus_signed_rate():
    # S falls steadily: signed R is negative (< delta) at once; |R| is large, so abs waits.
    values = [0.30, 0.27, 0.243, 0.2187, 0.19683, 0.177]
    signed = judge_sequence(
        _scores(values, start=0),
        BoundaryConfig(every=20, window=2, delta=1e-3, use_abs=False, least_3d_only=0, most_3d_only=1000),
    )
    absolute = judge_sequence(
        _scores(values, start=0),
        BoundaryConfig(every=20, window=2, delta=1e-3, use_abs=True, least_3d_only=0, most_3d_only=1000),
    )
    assert signed.t_switch == 40  # the first check with two change rates
    assert absolute.t_switch is None


def test_judge_state_round_trips():
    cfg = BoundaryConfig(every=20, window=2, delta=1e-9, least_3d_only=0, most_3d_only=1000)
    a = judge_sequence(_scores([0.2, 0.25, 0.3, 0.31]), cfg)
    b = BoundaryJudge.from_config(cfg)
    b.load_state(a.to_dict())
    assert b.to_dict() == a.to_dict()


@pytest.mark.parametrize(
    "form,s",
    [
        ("exponential", lambda r: 1 - math.exp(-r)),
        ("linear", lambda r: r),
        ("log", lambda r: math.log(1 + r) / math.log(2)),
    ],
)
def test_weight_forms_match_spec(form, s):
    eps = 1e-5
    for r in [0.0, 0.1, 0.37, 0.5, 0.9, 1.0]:
        w3d, w2d = blend_weights(r, form, 1.0, eps)
        assert w2d == pytest.approx(eps + (1 - eps) * s(r), abs=1e-12)
        assert w3d == pytest.approx(1 - (1 - eps) * s(r), abs=1e-12)
    # Both ends: stage 2 starts with the 3D prior only and ends with the 2D prior dominant.
    assert blend_weights(0.0, form, 1.0, eps) == pytest.approx((1.0, eps))
    assert blend_weights(1.0, form, 1.0, eps)[1] > blend_weights(0.5, form, 1.0, eps)[1]


def test_progress_runs_zero_to_one_across_stage2():
    assert stage2_progress(2500, 2500, 10_000) == 0.0
    assert stage2_progress(10_000, 2500, 10_000) == 1.0
    assert stage2_progress(6250, 2500, 10_000) == pytest.approx(0.5)


def test_strategies():
    T = 10_000
    base = DynamicConfig()
    # (consistent123) stage 1 before the switch, exponential sigma=1 after.
    assert prior_weights(100, None, T, base).stage == 1
    assert prior_weights(3000, 2000, T, base).w2d == pytest.approx(1e-5 + (1 - 1e-5) * (1 - math.exp(-1000 / 8000)))
    # (a) fixed switch at 3000
    a = DynamicConfig(strategy="fixed_switch")
    assert fixed_switch_iteration(a, 5000) == 3000
    # (b) w2D = 1 throughout stage 2, w3D still decays; R's script: stage 2 is the mesh phase,
    # w3D decays over the mesh phase's own progress, no boundary judgement
    b = DynamicConfig(strategy="w2d_one")
    assert b.w2d_one_form == "batch_test" and not b.uses_boundary_judgement
    assert fixed_switch_iteration(b, 5000) == 5000
    assert prior_weights(4999, 5000, T, b).stage == 1
    wb = prior_weights(7500, 5000, T, b)
    assert wb.w2d == 1.0 and wb.w3d == pytest.approx(1 - (1 - 1e-5) * (1 - math.exp(-0.5)))  # r = 2500 / 5000
    kept = DynamicConfig(strategy="w2d_one", w2d_one_form="boundary")
    assert kept.uses_boundary_judgement and fixed_switch_iteration(kept, 5000) is None
    wk = prior_weights(6000, 2000, T, kept)
    assert wk.w2d == 1.0 and wk.w3d == pytest.approx(1 - (1 - 1e-5) * (1 - math.exp(-0.5)))
    # (c) single stage from 0, exponential with sigma 1.5, whatever the schedule form says
    c = DynamicConfig(strategy="single_stage", schedule="linear")
    wc = prior_weights(5000, fixed_switch_iteration(c, 5000), T, c)
    assert wc.w3d == pytest.approx(1 - (1 - 1e-5) * (1 - math.exp(-0.5 / 1.5)))
    # 3d_only never blends; magic123 fixed 40:1 from the start
    assert prior_weights(9000, 2000, T, DynamicConfig(strategy="3d_only")).w2d == 0.0
    m = prior_weights(0, 0, T, DynamicConfig(strategy="magic123"))
    assert (m.w3d, m.w2d) == (40.0, 1.0)
