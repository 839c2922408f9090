"""The two-stage optimisation loop (paper §3, spec §3-§7), with checkpoints and exact resume.

One iteration: the boundary judgement may start stage 2, then the trainer carries out the
iteration's plan (``schedule.plan``: phase, stage weights, reference or novel view, camera
ranges, hash-grid level, timestep ranges, loss ramps) on the one field it holds (the NeRF,
then the DMTet mesh built from it at ``nerf_iters``; both follow ``fields.common.Representation``):
render, add the reference-view loss or the weighted SDS terms of both priors, the field's
regularisers, step. The stage-2 progress ``r`` keeps rising across both phases.

All randomness comes from two generators saved in every checkpoint (one on the CPU for
cameras and shading, one on the compute device for diffusion noise), so a resumed run
finishes with the same parameters as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from consistent123.case import Case
from consistent123.config import Config
from consistent123.images import on_white
from consistent123.losses import reference_losses
from consistent123.priors.base import Priors
from consistent123.render.cameras import Camera, check_cameras, reference_camera
from consistent123.training.checkpoint import config_hash, load_state, save_state
from consistent123.training.optimiser import make_optimizer, optimizer_step
from consistent123.training.schedule import (
    BoundaryJudge,
    IterationPlan,
    ViewDraw,
    draw_novel_view,
    draw_reference_view,
    fixed_switch_iteration,
    plan,
    prior_weights,
)
from consistent123.training.weight_average import weight_average

log = logging.getLogger(__name__)

WHITE = torch.ones(3)


@dataclass
class IterationRecord:
    iteration: int
    phase: str
    stage: int
    view: str
    w3d: float
    w2d: float
    losses: dict = field(default_factory=dict)

    def row(self) -> dict:
        out = {
            "iteration": self.iteration,
            "phase": self.phase,
            "stage": self.stage,
            "view": self.view,
            "w3d": self.w3d,
            "w2d": self.w2d,
        }
        out.update({f"loss_{k}": v for k, v in self.losses.items()})
        return out


class Trainer:
    def __init__(
        self,
        cfg: Config,
        case: Case,
        priors: Priors,
        device: torch.device,
        on_metrics: Optional[Callable[[dict, int], None]] = None,
        on_checkpoint: Optional[Callable[[], None]] = None,
    ):
        from consistent123.backends import resolve_all
        from consistent123.fields.nerf import NeRFField

        # "auto" backends resolved for this device before the fields are built (consistent123.backends).
        cfg = resolve_all(cfg, device).apply(cfg)
        self.cfg = cfg
        self.case = case
        self.priors = priors
        self.device = device
        self.on_metrics = on_metrics or (lambda metrics, step: None)
        self.on_checkpoint = on_checkpoint or (lambda: None)
        torch.manual_seed(cfg.train.seed)
        self.gen = torch.Generator().manual_seed(cfg.train.seed)
        self.gen_device = torch.Generator(device=device).manual_seed(cfg.train.seed + 1)
        self.nerf = NeRFField(cfg.nerf, cfg.hashgrid).to(device)
        self.field = self.nerf  # the representation being trained: the NeRF, then the mesh
        # R trains with -O (fp16): geometry under autocast, losses scaled. CUDA only.
        self.mixed_precision = cfg.train.mixed_precision and torch.device(device).type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.mixed_precision)
        self.optimizer = make_optimizer(self.field, cfg.train)
        self.judge = BoundaryJudge.from_config(cfg.boundary)
        self.t_switch: Optional[int] = fixed_switch_iteration(cfg.dynamic, cfg.train.nerf_iters)
        self.iteration = 0  # next iteration to run
        self.records: list[dict] = []
        self.ref_cam = reference_camera(cfg.cameras)
        self.nerf_average = weight_average(self.nerf, cfg.train)
        self._prepared_priors = False
        self._apply_perf()

    def _apply_perf(self) -> None:
        """cfg.perf's speed switches (none changes what is optimised; see consistent123.training.perf)."""
        from consistent123.training import perf

        perf.configure_backends(self.cfg.perf, self.device)
        perf.optimise_priors(self.priors, self.cfg.perf)
        perf.optimise_field(self.nerf, self.cfg.perf)
        self.targets = perf.TargetCache(
            self.case, self.device, self.cfg.loss.reference_targets, keep=self.cfg.perf.cache_targets
        )
        # On a CUDA device the ray samples come from the device generator; on the CPU it is the same path.
        on_device = self.cfg.perf.device_sampling and self.device.type != "cpu"
        self.sample_gen = self.gen_device if on_device else self.gen

    # ------------------------------------------------------------ schedule facts
    @property
    def total(self) -> int:
        return self.cfg.total_iters

    @property
    def phase(self) -> str:
        return self.field.phase

    @property
    def mesh(self):
        """The DMTet field once the mesh phase has started, else None (for export)."""
        return self.field if self.field.phase == "mesh" else None

    @property
    def model(self) -> torch.nn.Module:
        return self.field

    # ------------------------------------------------------------ rendering
    def _autocast(self):
        if not self.mixed_precision:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=torch.float16)

    def render(
        self,
        cam: Camera,
        size: int,
        shading,
        bg: Optional[torch.Tensor],
        perturb: bool = True,
        ray_noise=None,
        normal_perturb: float = 0.0,
    ) -> dict:
        with self._autocast():
            return self.field.render(
                cam,
                size,
                shading,
                None if bg is None else bg.to(self.device),
                generator=self.sample_gen,
                perturb=perturb,
                ray_noise=ray_noise,
                normal_perturb=normal_perturb,
            )

    def render_size(self) -> int:
        return self.field.render_size(reference=False)

    @torch.no_grad()
    def check_score(self) -> float:
        """S^k (paper Eq. 5): mean CLIP image-text cosine over the 8 check views."""
        from consistent123.render.volume import render_nerf
        from consistent123.training.check_views import check_images, clip_precision

        shading, banded = ("albedo", 1.0, None), self.field.phase == "nerf"

        def render_band(cam, size, rows):
            with self._autocast():
                if banded:  # a NeRF view a band of rows at a time
                    bg = WHITE.to(self.device)
                    out = render_nerf(self.field, cam, size, size, shading, bg, self.sample_gen, False, rows=rows)
                else:
                    out = self.render(cam, size, shading, WHITE, perturb=False)
            return out["rgb"]

        images = check_images(render_band, check_cameras(self.cfg.cameras), self.cfg.boundary, banded=banded)
        with clip_precision(self.cfg.boundary, self.device):
            scores = self.priors.clip_judge.text_similarity(images.to(self.device), self.case.caption)
        return float(scores.float().mean())

    # ------------------------------------------------------------ one iteration
    def _prepare_priors(self) -> None:
        if self._prepared_priors:
            return
        if self.priors.zero123 is not None:
            ref = self.case.rgba[None].to(self.device)
            ref_rgb = on_white(ref, channel_axis=1)  # Zero-1-to-3 saw objects on white
            self.priors.zero123.set_reference(ref_rgb, self.ref_cam)
        if self.priors.stable_diffusion is not None:
            self.priors.stable_diffusion.set_prompt(self.case.caption)
        self._prepared_priors = True

    def _judge_boundary(self, t: int) -> None:
        """The boundary judgement (paper §3.2): may set ``t_switch`` at this iteration."""
        if not (self.cfg.train.use_priors and self.cfg.dynamic.uses_boundary_judgement and self.t_switch is None):
            return
        if self.judge.must_force(t):
            self.judge.force(t)
            self.t_switch = t
            log.info("stage 2 forced at iteration %d", t)
        elif self.judge.is_check(t):
            score = self.check_score()
            if self.judge.observe(t, score):
                self.t_switch = t
                log.info("stage 2 starts at iteration %d (S=%.4f)", t, score)
            metrics = {"boundary_S": score}
            if self.judge.checks[-1].moving_average is not None:  # R needs a full window of rates
                metrics["boundary_R"] = self.judge.checks[-1].moving_average
            self.on_metrics(metrics, t)

    def _reference_terms(self, it: IterationPlan) -> tuple[dict, dict]:
        size = self.field.render_size(reference=True)
        draw = draw_reference_view(it, self.cfg, self.gen, size)
        out = self._render_draw(draw, size)
        target = self.targets.targets(size, draw.background)  # composited on the drawn background
        return out, reference_losses(out, target, self.cfg.loss, it.lambda_depth)

    def _novel_terms(self, it: IterationPlan) -> tuple[dict, dict]:
        draw = draw_novel_view(it, self.cfg, self.gen)
        out = self._render_draw(draw, self.field.render_size(reference=False))
        rgb = out["rgb"].float().permute(2, 0, 1)[None]
        cams = [draw.camera]
        terms = {}
        if it.w3d > 0 and self.priors.zero123 is not None:
            loss3d, _ = self.priors.zero123.sds(rgb, cams, it.t_range_3d, self.gen_device)
            terms["sds_3d"] = it.w3d * loss3d
        if it.w2d > 0 and self.priors.stable_diffusion is not None:
            loss2d, _ = self.priors.stable_diffusion.sds(rgb, cams, it.t_range_2d, self.gen_device)
            terms["sds_2d"] = it.w2d * loss2d
        return out, terms

    def _render_draw(self, draw: ViewDraw, size: int) -> dict:
        return self.render(
            draw.camera,
            size,
            draw.shading,
            draw.background,
            ray_noise=draw.ray_noise,
            normal_perturb=self.cfg.loss.normal_perturb if self.cfg.loss.lambda_normal_smooth_3d > 0 else 0.0,
        )

    def step(self) -> IterationRecord:
        t = self.iteration
        cfg = self.cfg
        it = plan(t, cfg, self.t_switch, self.gen)
        # Before the hand-over: the DMTet's SDF reads the NeRF's density with this iteration's blob
        # (a faded blob stays faded, also in a run resumed from the NeRF phase's last checkpoint).
        self.nerf.blob_scale = it.blob_scale
        if t == cfg.train.nerf_iters and self.field.phase == "nerf" and cfg.train.mesh_iters > 0:
            self.start_mesh_phase()
        self._prepare_priors()
        self.field.set_max_level(it.max_level)
        if self.field.phase == "nerf":  # empty-space skipping follows the density as it grows
            self.nerf.occupancy.maybe_update(self.nerf, t, cfg.nerf.occupancy_update_every, self.gen)
        self._judge_boundary(t)
        weights = prior_weights(t, self.t_switch, self.total - 1, cfg.dynamic)  # the judgement may have switched
        it = dataclasses.replace(it, stage=weights.stage, w3d=weights.w3d, w2d=weights.w2d)
        self.optimizer.zero_grad(set_to_none=True)
        out, terms = self._reference_terms(it) if it.view == "reference" else self._novel_terms(it)
        terms.update(self.field.regularisers(out, it, cfg.loss))
        total = sum(terms.values()) if terms else None
        if total is not None and total.requires_grad:
            self.scaler.scale(total).backward()
            optimizer_step(self.optimizer, self.scaler, cfg.train)
        if self.field.phase == "nerf" and self.nerf_average is not None and (t + 1) % cfg.train.ema_every == 0:
            self.nerf_average.update(self.nerf.parameters())  # R: once per epoch
        record = IterationRecord(
            t,
            it.phase,
            it.stage,
            it.view,
            it.w3d,
            it.w2d,
            {k: v.detach() if cfg.perf.sync_free_logging else float(v.detach()) for k, v in terms.items()},
        )
        self.records.append(record.row())
        self.iteration = t + 1
        return record

    def start_mesh_phase(self) -> None:
        """NeRF -> DMTet (built from the NeRF in one place); a fresh optimiser for the mesh."""
        from consistent123.fields.dmtet import DMTetField

        self.nerf.eval()
        from consistent123.training.perf import optimise_field

        if self.nerf_average is not None:  # the averaged weights, as R's mesh run loads them
            self.nerf_average.copy_to(self.nerf.parameters())

        self.field = DMTetField.from_nerf(self.nerf, self.cfg.dmtet, self.cfg.hashgrid, self.cfg.cameras)
        optimise_field(self.field, self.cfg.perf)
        self.optimizer = make_optimizer(self.field, self.cfg.train)

    # ------------------------------------------------------------ checkpoints
    def host_records(self) -> list[dict]:
        """The records with any loss still on the device read back (one transfer for all)."""
        from consistent123.training.perf import host_values

        host_values(self.records)
        return self.records

    def state(self) -> dict:
        self.host_records()
        return {
            "iteration": self.iteration,
            "nerf": self.nerf.state_dict(),
            "mesh": self.mesh.state_dict() if self.mesh is not None else None,
            "nerf_average": self.nerf_average.state_dict() if self.nerf_average is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "gen": self.gen.get_state(),
            "gen_device": self.gen_device.get_state(),
            "torch_rng": torch.get_rng_state(),
            "judge": self.judge.to_dict(),
            "t_switch": self.t_switch,
            "records": self.records,
            "config_hash": config_hash(self.cfg),
        }

    def save_checkpoint(self, path: Path) -> None:
        self.on_checkpoint()  # e.g. the tracker flushes first: the store never lags a checkpoint
        save_state(self.state(), path)

    def load_checkpoint(self, path: Path) -> None:
        state = load_state(path, self.device, config_hash(self.cfg))
        self.nerf.load_state_dict(state["nerf"])
        if self.nerf_average is not None:
            self.nerf_average.load_state_dict(state["nerf_average"])
        if state["mesh"] is not None:
            self.start_mesh_phase()
            self.mesh.load_state_dict(state["mesh"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.gen.set_state(state["gen"].cpu())
        self.gen_device.set_state(state["gen_device"].cpu())  # generator states are CPU byte tensors
        torch.set_rng_state(state["torch_rng"].cpu())
        self.judge.load_state(state["judge"])
        self.t_switch = state["t_switch"]
        self.records = list(state["records"])
        self.iteration = int(state["iteration"])

    # ------------------------------------------------------------ the whole run
    def fit(
        self, checkpoint_path: Optional[Path] = None, stop_after: Optional[int] = None, progress: bool = True
    ) -> None:
        from tqdm.auto import tqdm

        every = self.cfg.train.checkpoint_every
        bar = tqdm(
            total=self.total, initial=self.iteration, disable=not progress, dynamic_ncols=True, desc="reconstruct"
        )
        start = time.perf_counter()
        done_here = 0
        while self.iteration < self.total:
            record = self.step()
            done_here += 1
            rate = done_here / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix_str(f"{record.phase} stage {record.stage} w2D={record.w2d:.3f}", refresh=False)
            bar.update(1)
            if record.iteration % self.cfg.train.log_every == 0 or self.iteration == self.total:
                self.host_records()  # sync-free logging reads the device's losses here only
                metrics = {f"loss_{k}": float(v) for k, v in record.losses.items()}
                metrics.update({"w3d": record.w3d, "w2d": record.w2d, "stage": record.stage, "it_per_s": rate})
                self.on_metrics(metrics, record.iteration)
            if checkpoint_path is not None and every > 0 and self.iteration % every == 0:
                self.save_checkpoint(checkpoint_path)
            if stop_after is not None and self.iteration >= stop_after:
                bar.close()
                raise SystemExit(f"stopped after iteration {self.iteration} (--stop-after)")
        bar.close()
        self.host_records()
        if checkpoint_path is not None:
            self.save_checkpoint(checkpoint_path)  # the final state, for inspection and exact comparisons
        if self.t_switch is None and self.cfg.dynamic.uses_boundary_judgement and self.cfg.train.use_priors:
            log.warning("the boundary judgement never switched (the run ended before most_3d_only)")
