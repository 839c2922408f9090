"""The schedule of Consistent123 as pure functions: the one place for every schedule.

- Stage 1 -> 2 boundary judgement (paper §3.2, Eq. 5-6; spec §5): CLIP scores S^k of the
  check views, change rates c^k = (S^k - S^{k-1}) / S^{k-1}, their moving average R^k over
  the last L rates, switch at the first check with |R^k| < delta inside the window
  [least_3d_only, most_3d_only], forced at most_3d_only.
- Stage 2 dynamic prior (paper §3.3, Eq. 8-9; spec §6): r = (t - t_switch)/(T_end - t_switch),
  s(r) in {exponential, linear, log}, w2D = eps + (1-eps) s(r), w3D = 1 - (1-eps) s(r).
- Ablation strategies (paper A.5, Table 6) and baselines expressed in the same terms.
- One plan per iteration (``plan``): phase, stage and prior weights, reference or novel view,
  progressive camera ranges and hash-grid level, SDS timestep ranges, loss ramps; and the
  random draws of a view (``draw_novel_view``, ``draw_reference_view``). The trainer only
  carries the plan out, so a whole run's plan can be listed without rendering (``run_plan``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch

from consistent123.config import (
    BoundaryConfig,
    CamerasConfig,
    Config,
    DynamicConfig,
    LossConfig,
    NeRFConfig,
    TrainConfig,
)
from consistent123.priors.sds import timestep_range
from consistent123.render.cameras import Camera, novel_polar_range, reference_camera, sample_novel_camera
from consistent123.render.shading import sample_shading


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


def prior_weights(t: int, t_switch: Optional[int], t_end: int, dyn: DynamicConfig) -> PriorWeights:
    """Weights of the 3D and 2D SDS terms at iteration ``t`` under ``dyn`` (a DynamicConfig).

    ``t_switch`` is the stage-2 start (None while still in stage 1). Strategies:
    consistent123 / fixed_switch / dynamic_only use the dynamic prior after t_switch;
    w2d_one keeps w2D = 1 (w3D as the schedule says) in stage 2 (which starts with the mesh phase
    under dynamic.w2d_one_form "batch_test"); single_stage runs the dynamic
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


def fixed_switch_iteration(dyn: DynamicConfig, nerf_iters: int) -> Optional[int]:
    """Strategies whose switch does not depend on the boundary judgement: their t_switch
    (R's ablation (b) script switches where the mesh phase starts)."""
    if dyn.strategy == "w2d_one" and dyn.w2d_one_form == "batch_test":
        return nerf_iters
    return {
        "fixed_switch": dyn.fixed_switch_iter,
        "dynamic_only": 0,
        "single_stage": 0,
        "magic123": 0,
    }.get(dyn.strategy)


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
    def from_config(cls, boundary: BoundaryConfig) -> "BoundaryJudge":
        return cls(
            boundary.every,
            boundary.window,
            boundary.delta,
            boundary.use_abs,
            boundary.least_3d_only,
            boundary.most_3d_only,
        )

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
        avg = sum(rates[-self.window :]) / self.window if len(rates) >= self.window else None
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
            "settings": {
                "every": self.every,
                "window": self.window,
                "delta": self.delta,
                "use_abs": self.use_abs,
                "least_3d_only": self.least,
                "most_3d_only": self.most,
            },
        }

    def load_state(self, state: dict) -> None:
        self.checks = [Check(**c) for c in state["checks"]]
        self.t_switch = state["t_switch"]
        self.forced = state["forced"]


def judge_sequence(scores: list[tuple[int, float]], boundary: BoundaryConfig) -> BoundaryJudge:
    """Run the judgement over (iteration, S) pairs as training would; used by tests and plots."""
    judge = BoundaryJudge.from_config(boundary)
    for t, s in scores:
        if judge.must_force(t):
            judge.force(judge.most)
            break
        if judge.is_check(t) and judge.observe(t, s):
            break
    return judge


# ---------------------------------------------------------------- one plan per iteration
@dataclass(frozen=True)
class CameraRanges:
    """Novel-view sampling ranges (degrees, degrees, radius, degrees)."""

    polar_range: tuple[float, float]
    azimuth_range: tuple[float, float]
    radius_range: tuple[float, float]
    fovy_range: tuple[float, float]


@dataclass(frozen=True)
class IterationPlan:
    iteration: int  # over the whole run (NeRF + mesh)
    phase: str  # "nerf" or "mesh"
    phase_iteration: int
    progress: float  # p: phase_iteration / iterations of the phase (R's runs restart p)
    stage: int
    w3d: float
    w2d: float
    view: str  # "reference" or "novel"
    camera_ranges: CameraRanges
    max_level: float  # fraction of hash-grid levels in use
    t_range_3d: tuple[float, float]  # Zero-1-to-3 timestep range (t_max, t_max) in "max" mode
    t_range_2d: tuple[float, float]
    lambda_depth: float
    lambda_entropy: float
    blob_scale: float = 1.0  # strength of the NeRF's density blob (nerf.blob_fade)

    def row(self) -> dict:
        return asdict(self)


def phase_at(t: int, train_cfg: TrainConfig) -> tuple[str, int, int]:
    """(phase, iteration inside it, its length) at run iteration ``t``."""
    if t < train_cfg.nerf_iters or train_cfg.mesh_iters <= 0:
        return "nerf", t, train_cfg.nerf_iters
    return "mesh", t - train_cfg.nerf_iters, train_cfg.mesh_iters


def ramp(init: float, p: float) -> float:
    """R's progressive ratio min(1, init + 2p) (view range and hash-grid level)."""
    return min(1.0, init + 2.0 * p)


def camera_ranges(cams_cfg: CamerasConfig, r_v: float) -> CameraRanges:
    """Each range grown from the reference view: ref (1 - r_v) + full r_v (R train_step)."""

    def grow(ref: float, full) -> tuple[float, float]:
        return (ref * (1 - r_v) + full[0] * r_v, ref * (1 - r_v) + full[1] * r_v)

    return CameraRanges(
        grow(reference_camera(cams_cfg).polar, novel_polar_range(cams_cfg)),
        grow(cams_cfg.ref_azimuth, cams_cfg.azimuth_range),
        grow(cams_cfg.ref_radius, cams_cfg.radius_range),
        grow(cams_cfg.ref_fovy, cams_cfg.fovy_range),
    )


def is_reference_view(t: int, cfg: Config, generator: Optional[torch.Generator] = None) -> bool:
    cams = cfg.cameras
    if not cfg.train.use_priors:
        return True  # nothing to learn from novel views without priors
    if cams.ref_view_mode == "interval":
        return t % cams.ref_view_interval == 0
    if generator is None:
        raise ValueError("cameras.ref_view_mode=random needs a generator to plan an iteration")
    return bool(torch.rand(1, generator=generator) < cams.ref_view_probability)


def depth_weight(loss_cfg: LossConfig, p: float, in_mesh_phase: bool) -> float:
    """R ramps lambda_depth by min(1, p) and drops it in the mesh phase."""
    if in_mesh_phase and not loss_cfg.depth_in_mesh_phase:
        return 0.0
    return loss_cfg.lambda_depth * (min(1.0, p) if loss_cfg.depth_ramp else 1.0)


def entropy_weight(loss_cfg: LossConfig, p: float) -> float:
    """R: lambda_entropy * min(1, 2 * global_step / iters)."""
    return loss_cfg.lambda_entropy * min(1.0, loss_cfg.entropy_ramp * p)


def blob_scale(nerf_cfg: NeRFConfig, p: float) -> float:
    """1 for R's permanent blob; with nerf.blob_fade = f > 0, 1 - p / f down to 0 at p = f."""
    if nerf_cfg.blob_fade <= 0:
        return 1.0
    return max(0.0, 1.0 - p / nerf_cfg.blob_fade)


def plan(t: int, cfg: Config, t_switch: Optional[int], generator: Optional[torch.Generator] = None) -> IterationPlan:
    """Everything iteration ``t`` does, given the stage-2 start ``t_switch`` (None: not yet).

    ``generator`` is only drawn from when the reference view is picked at random
    (``cameras.ref_view_mode=random``)."""
    phase, t_phase, n_phase = phase_at(t, cfg.train)
    p = t_phase / max(n_phase, 1)
    mesh = phase == "mesh"
    cams = cfg.cameras
    progressive_view = cams.progressive_view and (not mesh or cams.progressive_view_in_mesh)
    ranges = camera_ranges(cams, ramp(cams.progressive_view_init, p) if progressive_view else 1.0)
    hg = cfg.hashgrid
    max_level = ramp(hg.progressive_level_init, p) if hg.progressive_level else 1.0
    weights = prior_weights(t, t_switch, cfg.total_iters - 1, cfg.dynamic)
    t_range = cfg.sds.t_range_mesh if mesh else cfg.sds.t_range_nerf
    return IterationPlan(
        iteration=t,
        phase=phase,
        phase_iteration=t_phase,
        progress=p,
        stage=weights.stage,
        w3d=weights.w3d,
        w2d=weights.w2d,
        view="reference" if is_reference_view(t, cfg, generator) else "novel",
        camera_ranges=ranges,
        max_level=max_level,
        t_range_3d=timestep_range(t_range, cfg.sds.zero123_timestep),
        t_range_2d=timestep_range(t_range, cfg.sds.sd_timestep),
        lambda_depth=depth_weight(cfg.loss, p, mesh),
        lambda_entropy=0.0 if mesh else entropy_weight(cfg.loss, p),
        blob_scale=0.0 if mesh and cfg.nerf.blob_fade > 0 else blob_scale(cfg.nerf, p),
    )


def run_plan(cfg: Config, t_switch: Optional[int]) -> list[IterationPlan]:
    """The whole run's plan for a given switch iteration, without rendering anything."""
    gen = torch.Generator().manual_seed(cfg.train.seed)
    return [plan(t, cfg, t_switch, gen) for t in range(cfg.total_iters)]


# ---------------------------------------------------------------- the random draws of a view
@dataclass
class ViewDraw:
    camera: Camera
    shading: tuple  # (mode, ambient, light direction or None)
    background: torch.Tensor  # [3] or one colour per pixel [H, W, 3]
    ray_noise: Optional[tuple[torch.Tensor, torch.Tensor]] = None


WHITE = (1.0, 1.0, 1.0)


def draw_novel_view(it: IterationPlan, cfg: Config, generator: torch.Generator) -> ViewDraw:
    """Camera in the plan's ranges, shading (R: lambertian 0.8 / textureless 0.2), background."""
    cam = sample_novel_camera(it.camera_ranges, generator)
    shading = sample_shading(cfg.nerf, generator, camera=cam)
    if cfg.nerf.novel_background == "random":
        bg = torch.rand(3, generator=generator)
    else:
        bg = torch.tensor(WHITE)
    return ViewDraw(cam, shading, bg)


def draw_reference_view(it: IterationPlan, cfg: Config, generator: torch.Generator, size: int) -> ViewDraw:
    """The known view as R trains it: lambertian at ambient 1, a random colour per pixel behind
    it, and one random offset of the ray origins and directions (NeRF phase only)."""
    nerf = cfg.nerf
    shading = (nerf.ref_shading, 1.0, None)
    if nerf.ref_background == "per_pixel":
        bg = torch.rand(size, size, 3, generator=generator)
    elif nerf.ref_background == "solid":
        bg = torch.rand(3, generator=generator)
    else:
        bg = torch.tensor(WHITE)
    noise = None
    if nerf.ref_ray_noise > 0 and it.phase == "nerf":
        noise = (
            torch.randn(3, generator=generator) * nerf.ref_ray_noise,
            torch.randn(3, generator=generator) * nerf.ref_ray_noise,
        )
    return ViewDraw(reference_camera(cfg.cameras), shading, bg, noise)
