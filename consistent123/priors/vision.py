"""Pretrained vision parts of preprocessing: captioner, depth estimator, foreground segmenter.

Each ``load_*`` returns a small callable object that hides its model and processor:

* ``Captioner``: ``PIL.Image -> str`` (BLIP, ``BlipForConditionalGeneration``).
* ``DepthEstimator``: ``PIL.Image -> float32 HxW`` relative depth at the image's size,
  **larger = nearer** (disparity-like, as MiDaS/DPT and Depth Anything predict). Models that
  predict metric depth (ZoeDepth, Depth Pro, GLPN: larger = farther) are turned into inverse
  depth so the convention holds whatever ``models.depth`` names. Preprocessing flips it into
  the depth (larger = farther) that ``depth.png`` and the authors' files store.
* ``Segmenter``: ``(PIL.Image, prompt=None) -> float32 HxW`` foreground probability in [0, 1].

Segmenter choice: CLIPSeg (``CIDAS/clipseg-rd64-refined``, ``CLIPSegForImageSegmentation``).
The authors used carvekit (tracer_b7 + FBA), Magic123/DreamGaussian rembg's U^2-Net; the
dedicated salient-object models on the Hugging Face hub (RMBG-1.4/2.0, BiRefNet) only load
with ``trust_remote_code``, which this project never enables, and rembg fetches ONNX files
outside the hub cache (no offline pre-fetch, no tiny twin). Of the segmenters that
transformers implements natively, CLIPSeg is the one that segments an *arbitrary* object
without a point/box prompt and without a fixed class list (Mask2Former/OneFormer only know
COCO/ADE classes: no shoes, no SpongeBob): it is prompted with text, and preprocessing
prompts it with the caption of the image (or ``preprocess.segmenter_prompt``). Its mask is
coarse (352² logits), which is acceptable because benchmark inputs come with their alpha
channel and the segmenter is only the fallback for photos without one.

``consistent123.priors.standins.vision.build_tiny_vision_models(root)`` builds each of the three classes at tiny size with random
weights, with its processor/tokenizer, in the same on-disk format as the hub repositories,
so the same ``load_*`` functions load them (offline, in seconds).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from consistent123.device import resolve_device
from consistent123.errors import ConfigError
from consistent123.priors.hub import load_pretrained

log = logging.getLogger(__name__)

DEFAULT_SEGMENTER_PROMPT = "the main object"
# Metric-depth models: larger = farther; converted to inverse depth (larger = nearer).
_METRIC_DEPTH_TYPES = {"zoedepth", "depth_pro", "glpn"}
# Hub repos that only load with remote code: refused with a clear message instead of a
# confusing download/"unknown model type" error.
_REMOTE_CODE_SEGMENTERS = {"briaai/RMBG-1.4", "briaai/RMBG-2.0", "ZhengPeng7/BiRefNet", "ZhengPeng7/BiRefNet_lite"}


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


# ------------------------------------------------------------------------- captioner
class Captioner:
    """BLIP image captioning: ``captioner(image) -> str`` (unconditional caption)."""

    def __init__(self, model, processor, device: torch.device, source: str, max_new_tokens: int = 30):
        self.model, self.processor, self.device = model.eval().to(device), processor, device
        self.source, self.max_new_tokens = source, max_new_tokens

    @torch.no_grad()
    def __call__(self, image: Image.Image) -> str:
        inputs = self.processor(images=_rgb(image), return_tensors="pt").to(self.device)
        tokens = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
        return " ".join(self.processor.decode(tokens[0], skip_special_tokens=True).split())


def load_captioner(source: str, device=None, cache_dir: str | None = None, max_new_tokens: int = 30) -> Captioner:
    from transformers import BlipForConditionalGeneration, BlipProcessor

    model = load_pretrained(
        BlipForConditionalGeneration.from_pretrained, source, "captioner", "models.captioner", cache_dir
    )
    processor = load_pretrained(
        BlipProcessor.from_pretrained, source, "captioner processor", "models.captioner", cache_dir
    )
    return Captioner(model, processor, resolve_device(device), source, max_new_tokens)


# ------------------------------------------------------------------------- depth
class DepthEstimator:
    """Monocular relative depth: ``estimator(image) -> float32 HxW``, larger = nearer."""

    def __init__(self, model, processor, device: torch.device, source: str, input_size: int | None = None):
        self.model, self.processor, self.device, self.source = model.eval().to(device), processor, device, source
        # Processors take {"height", "width"}; aspect-preserving ones (Depth Anything) keep their own rules.
        self.resize = {"size": {"height": input_size, "width": input_size}} if input_size else {}
        self.metric = getattr(model.config, "model_type", "") in _METRIC_DEPTH_TYPES

    @torch.no_grad()
    def __call__(self, image: Image.Image) -> np.ndarray:
        image = _rgb(image)
        inputs = self.processor(images=image, return_tensors="pt", **self.resize).to(self.device)
        predicted = self.model(**inputs).predicted_depth  # (1, h, w) at the model's resolution
        # Back to the image's size with the library's own (bicubic) interpolation.
        depth = torch.nn.functional.interpolate(
            predicted[:, None].float(), size=(image.height, image.width), mode="bicubic", align_corners=False
        )[0, 0]
        depth = depth.cpu().numpy().astype(np.float32)
        if self.metric:
            depth = 1.0 / np.maximum(depth, 1e-6)
        return depth


def load_depth_estimator(
    source: str, device=None, cache_dir: str | None = None, input_size: int | None = None
) -> DepthEstimator:
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    model = load_pretrained(
        AutoModelForDepthEstimation.from_pretrained, source, "depth estimator", "models.depth", cache_dir
    )
    processor = load_pretrained(
        AutoImageProcessor.from_pretrained, source, "depth processor", "models.depth", cache_dir
    )
    return DepthEstimator(model, processor, resolve_device(device), source, input_size)


# ------------------------------------------------------------------------- segmenter
class Segmenter:
    """Text-prompted foreground segmentation (CLIPSeg): ``segmenter(image, prompt) -> [0,1] HxW``."""

    def __init__(self, model, processor, device: torch.device, source: str, prompt: str = DEFAULT_SEGMENTER_PROMPT):
        self.model, self.processor, self.device, self.source = model.eval().to(device), processor, device, source
        self.prompt = prompt

    @torch.no_grad()
    def __call__(self, image: Image.Image, prompt: str | None = None) -> np.ndarray:
        image = _rgb(image)
        text = (prompt or self.prompt).strip() or DEFAULT_SEGMENTER_PROMPT
        max_len = self.model.config.text_config.max_position_embeddings  # CLIP's text window (77)
        inputs = self.processor(
            text=[text], images=[image], padding=True, truncation=True, max_length=max_len, return_tensors="pt"
        ).to(self.device)
        logits = self.model(**inputs).logits.float()
        logits = logits.reshape(1, 1, *logits.shape[-2:])  # batch of one may come back squeezed
        prob = torch.sigmoid(
            torch.nn.functional.interpolate(
                logits, size=(image.height, image.width), mode="bilinear", align_corners=False
            )
        )[0, 0]
        return prob.clamp(0.0, 1.0).cpu().numpy().astype(np.float32)


def load_segmenter(
    source: str, device=None, cache_dir: str | None = None, prompt: str = DEFAULT_SEGMENTER_PROMPT
) -> Segmenter:
    from transformers import AutoConfig, CLIPSegForImageSegmentation, CLIPSegProcessor

    if source in _REMOTE_CODE_SEGMENTERS:
        raise ConfigError(
            f"models.segmenter: {source!r} only loads with remote code, which is never enabled; "
            "use a CLIPSeg model such as 'CIDAS/clipseg-rd64-refined'"
        )
    config = load_pretrained(AutoConfig.from_pretrained, source, "segmenter", "models.segmenter", cache_dir)
    if config.model_type != "clipseg":
        raise ConfigError(
            f"models.segmenter: {source!r} is a {config.model_type!r} model; supported: clipseg "
            "(e.g. 'CIDAS/clipseg-rd64-refined')"
        )
    model = load_pretrained(
        CLIPSegForImageSegmentation.from_pretrained, source, "segmenter", "models.segmenter", cache_dir
    )
    processor = load_pretrained(
        CLIPSegProcessor.from_pretrained, source, "segmenter processor", "models.segmenter", cache_dir
    )
    return Segmenter(model, processor, resolve_device(device), source, prompt)
