"""The schedule of Consistent123 as pure functions: the one place for every schedule.

- Stage 1 -> 2 boundary judgement (paper §3.2, Eq. 5-6; spec §5): CLIP scores S^k of the
  check views, change rates c^k = (S^k - S^{k-1}) / S^{k-1}, their moving average R^k over
  the last L rates, switch at the first check with |R^k| < delta inside the window
  [least_3d_only, most_3d_only], forced at most_3d_only.
- Stage 2 dynamic prior (paper §3.3, Eq. 8-9; spec §6): r = (t - t_switch)/(T_end - t_switch),
  s(r) in {exponential, linear, log}, w2D = eps + (1-eps) s(r), w3D = 1 - (1-eps) s(r).
- Ablation strategies (paper A.5, Table 6) and baselines expressed in the same terms.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional


# ---------------------------------------------------------------- dynamic prior weights
def rise(r: float, form: str, sigma: float = 1.0) -> float:
    """s(r): 0 at r=0, rising with r (spec §6 table)."""
    r = min(max(r, 0.0), 1.0)
    if form == "exponential":
        return 1.0 - math.exp(-r / sigma)
    if form == "linear":
        return r
    if form == "log":
        return math.log2(1.0 + r)
    raise ValueError(f"unknown schedule form {form!r}")


def blend_weights(r: float, form: str, sigma: float, eps: float) -> tuple[float, float]:
    """(w3D, w2D) at stage-2 progress r."""
    s = rise(r, form, sigma)
    return 1.0 - (1.0 - eps) * s, eps + (1.0 - eps) * s


def stage2_progress(t: int, t_switch: int, t_end: int) -> float:
    """r = (t - t_switch) / (T_end - t_switch), clipped to [0, 1]; T_end is the last iteration."""
    if t_end <= t_switch:
        return 1.0
    return min(max((t - t_switch) / (t_end - t_switch), 0.0), 1.0)


@dataclass(frozen=True)
class PriorWeights:
    stage: int  # 1 = 3D prior only, 2 = dynamic blend
    w3d: float
    w2d: float


def prior_weights(t: int, t_switch: Optional[int], t_end: int, dyn) -> PriorWeights:
    """Weights of the 3D and 2D SDS terms at iteration ``t`` under ``dyn`` (a DynamicConfig).

    ``t_switch`` is the stage-2 start (None while still in stage 1). Strategies:
    consistent123 / fixed_switch / dynamic_only use the dynamic prior after t_switch;
    w2d_one keeps w2D = 1 (w3D as the schedule says) in stage 2; single_stage runs the dynamic
    prior with sigma_single_stage from t_switch = 0; 3d_only never leaves stage 1; magic123
    uses fixed weights from the start.
    """
    strategy = dyn.strategy
    if strategy == "magic123":
        return PriorWeights(2, dyn.magic123_w3d, dyn.magic123_w2d)
    if t_switch is None or t < t_switch or strategy == "3d_only":
        return PriorWeights(1, 1.0, 0.0)
    r = stage2_progress(t, t_switch, t_end)
    if strategy == "single_stage":  # paper Eq. 13: the exponential form with sigma = 1.5
        w3d, w2d = blend_weights(r, "exponential", dyn.sigma_single_stage, dyn.eps)
    else:
        w3d, w2d = blend_weights(r, dyn.schedule, dyn.sigma, dyn.eps)
    if strategy == "w2d_one":
        w2d = 1.0
    return PriorWeights(2, w3d, w2d)


def fixed_switch_iteration(dyn) -> Optional[int]:
    """Strategies whose switch does not depend on the boundary judgement: their t_switch."""
    return {
        "fixed_switch": dyn.fixed_switch_iter,
        "dynamic_only": 0,
        "single_stage": 0,
        "magic123": 0,
    }.get(dyn.strategy)


def uses_boundary_judgement(dyn) -> bool:
    return dyn.strategy in ("consistent123", "w2d_one")


# ---------------------------------------------------------------- boundary judgement
@dataclass
class Check:
    iteration: int
    S: float
    change_rate: Optional[float]
    moving_average: Optional[float]


@dataclass
class BoundaryJudge:
    """State machine of the stage-1 boundary judgement; serialisable for checkpoints.

    The caller asks ``is_check(t)`` and, when true, renders the check views, computes S and
    calls ``observe(t, S)``. ``force(t)`` ends stage 1 at ``most_3d_only`` when no check fired.
    """

    every: int
    window: int
    delta: float
    use_abs: bool
    least: int
    most: int
    checks: list[Check] = field(default_factory=list)
    t_switch: Optional[int] = None
    forced: bool = False

    @classmethod
    def from_config(cls, boundary) -> "BoundaryJudge":
        return cls(boundary.every, boundary.window, boundary.delta, boundary.use_abs,
                   boundary.least_3d_only, boundary.most_3d_only)

    def is_check(self, t: int) -> bool:
        return self.t_switch is None and self.least <= t < self.most and t % self.every == 0

    def must_force(self, t: int) -> bool:
        return self.t_switch is None and t >= self.most

    def observe(self, t: int, score: float) -> bool:
        """Record S at check iteration ``t``; returns True when stage 2 starts at ``t``."""
        rate = None
        if self.checks and self.checks[-1].S != 0:
            prev = self.checks[-1].S
            rate = (score - prev) / prev
        rates = [c.change_rate for c in self.checks if c.change_rate is not None] + ([rate] if rate is not None else [])
        avg = sum(rates[-self.window:]) / self.window if len(rates) >= self.window else None
        self.checks.append(Check(t, float(score), rate, avg))
        if avg is not None and (abs(avg) if self.use_abs else avg) < self.delta:
            self.t_switch = t
        return self.t_switch == t

    def force(self, t: int) -> None:
        self.t_switch = t
        self.forced = True

    def to_dict(self) -> dict:
        return {
            "checks": [asdict(c) for c in self.checks],
            "t_switch": self.t_switch,
            "forced": self.forced,
            "settings": {"every": self.every, "window": self.window, "delta": self.delta,
                         "use_abs": self.use_abs, "least_3d_only": self.least, "most_3d_only": self.most},
        }

    def load_state(self, state: dict) -> None:
        self.checks = [Check(**c) for c in state["checks"]]
        self.t_switch = state["t_switch"]
        self.forced = state["forced"]


def judge_sequence(scores: list[tuple[int, float]], boundary) -> BoundaryJudge:
    """Run the judgement over (iteration, S) pairs as training would; used by tests and plots."""
    judge = BoundaryJudge.from_config(boundary)
    for t, s in scores:
        if judge.must_force(t):
            judge.force(judge.most)
            break
        if judge.is_check(t) and judge.observe(t, s):
            break
    return judge
