"""Images of the object forming, logged to the run while it trains (``train.log_images_every``).

Every ``log_images_every`` iterations the run gets one strip of the 8 boundary-check views
(``progress/check_views_it<iteration>.png``), so `mlflow ui` shows the shape and colour
settling. Rendering a strip never changes training: the trainer's random generators and
torch's global one are restored afterwards.
"""

from __future__ import annotations

import numpy as np
import torch

from consistent123.images import upscale_for_display


@torch.no_grad()
def check_view_strip(trainer, size: int) -> np.ndarray:
    """The 8 check views of the current model side by side on white, uint8 [size, 8*size, 3]."""
    from consistent123.render.cameras import check_cameras
    from consistent123.training.trainer import WHITE

    gen_state = trainer.gen.get_state()
    gen_device_state = trainer.gen_device.get_state()
    devices = [trainer.device] if trainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        views = [
            trainer.render(cam, size, ("albedo", 1.0, None), WHITE, perturb=False)["rgb"]
            for cam in check_cameras(trainer.cfg.cameras)
        ]
    trainer.gen.set_state(gen_state)
    trainer.gen_device.set_state(gen_device_state)
    strip = torch.cat(views, dim=1).clamp(0, 1).cpu().numpy()
    return (strip * 255 + 0.5).astype(np.uint8)


class ProgressImages:
    """A metrics callback for the Trainer that also logs a check-view strip every ``every`` iterations.

    ``attach`` it to the trainer after any checkpoint was loaded, so a resumed run continues
    from the iteration it reached; ``final`` logs the last state if the loop did not end on a
    multiple of ``every``.
    """

    def __init__(self, tracker, every: int, size: int):
        self.tracker = tracker
        self.every = every
        self.size = size
        self.trainer = None
        self.logged: int | None = None  # iteration of the last strip (None: none yet)

    def attach(self, trainer) -> None:
        self.trainer = trainer
        self.logged = trainer.iteration if trainer.iteration else None

    def __call__(self, metrics: dict, step: int) -> None:
        self.tracker.log_metrics(metrics, step)
        if self.trainer is None or self.every <= 0:
            return
        done = self.trainer.iteration  # iterations completed so far
        if done and done // self.every > (self.logged or 0) // self.every:
            self.log(done)

    def final(self) -> None:
        if self.trainer is not None and self.every > 0 and self.trainer.iteration != self.logged:
            self.log(self.trainer.iteration)

    def log(self, iteration: int) -> None:
        strip = upscale_for_display(check_view_strip(self.trainer, self.size))
        self.tracker.log_image(strip, f"progress/check_views_it{iteration:06d}.png")
        self.logged = iteration
