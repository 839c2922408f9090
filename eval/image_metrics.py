"""Image metrics: PSNR and SSIM (scikit-image) and LPIPS (the `lpips` package), on white backgrounds.

Images are float arrays [H, W, 3] in [0, 1]. RGBA inputs are composited over white first,
as the paper evaluates the reference view on a white background.
"""

from __future__ import annotations

import logging
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from consistent123.errors import InputError
from consistent123.images import on_white
from consistent123.priors.lpips_backbone import ensure_backbone

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- loading
def load_image_on_white(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read an image as float32 [H, W, 3] in [0, 1], alpha composited on white, optionally resized.

    ``size`` is (height, width) or one side for a square; resizing is done on the composited
    RGB with a Lanczos filter (antialiased), so a 512² input compares fairly with a 256² render.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("RGBA")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__})") from None
    rgb = on_white(np.asarray(im, dtype=np.float32) / 255.0)
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        if rgb.shape[:2] != (h, w):
            pil = Image.fromarray(np.round(rgb * 255.0).astype(np.uint8))
            rgb = np.asarray(pil.resize((w, h), Image.LANCZOS), dtype=np.float32) / 255.0
    return rgb


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")


# ---------------------------------------------------------------- PSNR
def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB with data range 1 (scikit-image); identical images give +inf."""
    _check_pair(pred, target)
    with warnings.catch_warnings():  # identical images: skimage warns about division by zero
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(
            peak_signal_noise_ratio(np.asarray(target, np.float64), np.asarray(pred, np.float64), data_range=1.0)
        )


# ---------------------------------------------------------------- SSIM
def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM of two RGB images in [0, 1] (scikit-image, 7x7 window, channels averaged): EscherNet's
    metrics/eval_2D_NVS.py call (skimage, channel_axis=2; it passes uint8, i.e. data range 255)."""
    _check_pair(pred, target)
    return float(
        structural_similarity(
            np.asarray(target, np.float64), np.asarray(pred, np.float64), channel_axis=2, data_range=1.0
        )
    )


# ---------------------------------------------------------------- LPIPS
class LpipsMetric:
    """LPIPS v0.1 (linear layers shipped inside the `lpips` package) on an ImageNet backbone.

    ``random_backbone=True`` keeps the real v0.1 linear layers but a randomly initialised trunk
    (lpips' own ``pnet_rand`` switch): for tests on machines without the backbone weights only;
    its values are not LPIPS and must never be reported.
    """

    def __init__(
        self,
        net: str = "alex",
        device: str | torch.device = "cpu",
        random_backbone: bool = False,
        allow_download: bool = True,
    ):
        import lpips

        self.net = net
        self.device = torch.device(device)
        self.random_backbone = random_backbone
        if not random_backbone:
            ensure_backbone(net, allow_download)
        with warnings.catch_warnings():  # torchvision's deprecation notice for lpips' `pretrained=` call
            warnings.simplefilter("ignore", UserWarning)
            if random_backbone:
                torch.manual_seed(0)  # the random trunk is at least the same one every time
            self.model = (
                lpips.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=random_backbone, verbose=False)
                .to(self.device)
                .eval()
            )

    @property
    def name(self) -> str:
        return f"lpips-v0.1-{self.net}" + ("-RANDOM-BACKBONE" if self.random_backbone else "")

    @torch.no_grad()
    def __call__(self, pred: np.ndarray, target: np.ndarray) -> float:
        """LPIPS distance of two [H, W, 3] images in [0, 1]."""
        return self.batch([pred], [target])[0]

    @torch.no_grad()
    def batch(self, preds: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> list[float]:
        for a, b in zip(preds, targets):
            _check_pair(a, b)

        def to_tensor(images):  # lpips expects [B, 3, H, W] in [-1, 1]
            x = torch.as_tensor(np.stack(images), dtype=torch.float32, device=self.device)
            return x.permute(0, 3, 1, 2) * 2.0 - 1.0

        out = self.model(to_tensor(preds), to_tensor(targets))
        return [float(v) for v in out.reshape(-1).cpu()]


@lru_cache(maxsize=4)
def load_lpips(net: str = "alex", device: str = "cpu", random_backbone: bool = False) -> LpipsMetric:
    """LPIPS metric cached per process; ModelUnavailableError when the real backbone is absent."""
    return LpipsMetric(net, device, random_backbone=random_backbone)
