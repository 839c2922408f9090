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

``build_tiny_vision_models(root)`` builds each of the three classes at tiny size with random
weights, with its processor/tokenizer, in the same on-disk format as the hub repositories,
so the same ``load_*`` functions load them (offline, in seconds).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

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


# ------------------------------------------------------------------------- tiny models
# Words for the tiny captioner's vocabulary: enough for a random model to emit "captions".
_TINY_WORDS = (
    "a an the of on in with and photo picture object toy statue figure shoe cake teapot bird cat dog "
    "fish banana flower plant pot cup chair red green blue yellow brown black white pink grey small "
    "large wooden metal sitting standing"
).split()
_TINY_SEED = 0


def _tiny_blip(root: Path) -> None:
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]  # BLIP decodes from [DEC]
    vocab = {tok: i for i, tok in enumerate(specials + _TINY_WORDS)}
    tokenizer = BertTokenizer(vocab=vocab, bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=vocab["[DEC]"],
            pad_token_id=vocab["[PAD]"],
            sep_token_id=vocab["[SEP]"],
            eos_token_id=vocab["[SEP]"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=32,
    )
    model = BlipForConditionalGeneration(config).eval()
    # A random decoder may emit [SEP] first (empty caption): forbid ending before 3 tokens.
    model.generation_config.min_new_tokens = 3
    model.save_pretrained(root)
    processor.save_pretrained(root)


def _tiny_dpt(root: Path) -> None:
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        is_hybrid=False,
    )
    model = DPTForDepthEstimation(config).eval()
    # Plain (non-hybrid) DPT reassembles a square token grid: square input, like Intel/dpt-large.
    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False)
    model.save_pretrained(root)
    processor.save_pretrained(root)


def _tiny_clipseg(root: Path) -> None:
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        CLIPTokenizer,
        ViTImageProcessor,
    )

    # Byte-level BPE vocabulary with no merges: every character is a token, as in CLIP's base alphabet.
    chars = sorted(ByteLevel.alphabet())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = ViTImageProcessor(
        size={"height": 32, "width": 32}, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]
    )
    processor = CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer)
    config = CLIPSegConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=32,
        extract_layers=[0, 1, 2],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
        use_complex_transposed_convolution=True,
    )
    model = CLIPSegForImageSegmentation(config).eval()
    model.save_pretrained(root)
    processor.save_pretrained(root)


_TINY_BUILDERS = {"captioner": _tiny_blip, "depth": _tiny_dpt, "segmenter": _tiny_clipseg}


def build_tiny_vision_models(root: Path, seed: int = _TINY_SEED) -> dict[str, Path]:
    """Build the tiny captioner, depth estimator and segmenter under ``root/<key>``; return their folders."""
    root = Path(root)
    out: dict[str, Path] = {}
    for key, builder in _TINY_BUILDERS.items():
        folder = root / key
        folder.mkdir(parents=True, exist_ok=True)
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's RNG
            torch.manual_seed(seed)
            builder(folder)
        (folder / "tiny.json").write_text(json.dumps({"kind": key, "seed": seed, "random_weights": True}) + "\n")
        out[key] = folder
    return out
