"""The real prior architectures with random weights: what the real models cost, without a download.

A diffusion model's run time and memory do not depend on its weights, so the full-size random
priors time a reconstruction exactly as the real checkpoints would. The architectures come
from the configs kept next to this file (``full_size/*.json``, copied from the real repos'
config files, each naming its source):

    Stable Diffusion 2.1-base   unet (sd21_base_unet), vae (sd_vae), OpenCLIP-H text tower as a
                                transformers CLIPTextModel (sd21_text_encoder), CLIP BPE tokenizer
    Zero-1-to-3 XL              unet with 8 input channels (zero123_xl_unet), vae (sd_vae), CLIP
                                ViT-L/14 image encoder (clip_vit_l14_vision), 772 -> 768 projection
    CLIP judge                  open_clip ViT-B/16 (openclip_vit_b16)

The parts are built in memory and handed to the same prior classes the real checkpoints are
loaded into (``Zero123Prior``, ``StableDiffusionPrior``, ``ClipModel``). On
``torch.device("meta")`` nothing is allocated: that is how the parameter counts are checked in
a fraction of a second.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import torch

from consistent123.config import Config
from consistent123.priors.standins.constants import CLIP_MEAN, CLIP_STD, SD_BETAS, seeded

CONFIGS = Path(__file__).with_name("full_size")
# Published parameter counts of the parts whose sizes the papers and model cards quote.
PUBLISHED_PARAMS = {
    "sd_unet": 865_910_724,  # SD 2.x UNet
    "zero123_unet": 859_532_484,  # SD 1.x UNet (859,520,964) + 4 more input channels in conv_in
    "sd_vae": 83_653_863,  # KL-f8 autoencoder
    "zero123_vae": 83_653_863,
}
CLIP_IMAGE_SIZE = 224  # ViT-L/14's input (Zero-1-to-3's feature_extractor crop)


def architecture(name: str) -> dict:
    """One config of ``full_size/``, without its provenance keys (those starting with ``_``)."""
    data = json.loads((CONFIGS / f"{name}.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _build(device, seed: int, make):
    """``make()`` with its parameters created directly on ``device`` (meta: no memory at all)."""
    with seeded(seed), torch.device(device):
        return make()


def _unet(name: str, device, seed: int):
    from diffusers import UNet2DConditionModel

    return _build(device, seed, lambda: UNet2DConditionModel(**architecture(name)))


def _vae(device, seed: int):
    from diffusers import AutoencoderKL

    return _build(device, seed, lambda: AutoencoderKL(**architecture("sd_vae")))


def clip_tokenizer():
    """CLIP's tokenizer (49408 tokens) rebuilt offline from the BPE file open_clip ships."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    tokens = (
        symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    )
    vocab = {t: i for i, t in enumerate(tokens)}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
        return CLIPTokenizer(
            str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=77, pad_token="!"
        )  # SD 2.x pads with "!" (id 0)


# ---------------------------------------------------------------- the three priors' parts
def zero123_components(device="meta") -> dict:
    """Zero-1-to-3 XL's parts as ``zero123._load_components`` returns them for a real repo."""
    from diffusers import DDIMScheduler
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    vision = CLIPVisionConfig(**architecture("clip_vit_l14_vision"))
    dim = vision.projection_dim
    crop = {"height": CLIP_IMAGE_SIZE, "width": CLIP_IMAGE_SIZE}
    return dict(
        unet=_unet("zero123_xl_unet", device, 11),
        vae=_vae(device, 12),
        image_encoder=_build(device, 13, lambda: CLIPVisionModelWithProjection(vision)),
        feature_extractor=CLIPImageProcessor(
            size={"shortest_edge": CLIP_IMAGE_SIZE}, crop_size=crop, image_mean=CLIP_MEAN, image_std=CLIP_STD
        ),
        scheduler=DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        # cc_projection: image embedding (768) + 4 camera numbers -> 768.
        cc_projection=_build(device, 14, lambda: torch.nn.Linear(dim + 4, dim)),
    )


def stable_diffusion_components(device="meta") -> dict:
    """Stable Diffusion 2.1-base's parts as ``stable_diffusion._load_components`` returns them."""
    from diffusers import PNDMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    text = CLIPTextConfig(**architecture("sd21_text_encoder"))
    return dict(
        unet=_unet("sd21_base_unet", device, 15),
        vae=_vae(device, 16),
        text_encoder=_build(device, 17, lambda: CLIPTextModel(text)),
        tokenizer=clip_tokenizer(),
        scheduler=PNDMScheduler(**SD_BETAS, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1),
    )


def clip_judge(device="meta"):
    """The open_clip ViT-B/16 judge as ``clip.load_clip`` returns it."""
    import open_clip

    from consistent123.priors.clip import ClipModel

    spec = architecture("openclip_vit_b16")
    model = _build(device, 18, lambda: open_clip.CLIP(**spec["model_cfg"]))
    model.visual.preprocess_cfg = spec["preprocess_cfg"]
    return ClipModel(model, open_clip.get_tokenizer("ViT-B-16"), "full-size random ViT-B-16", torch.device(device))


def load_full_size_priors(cfg: Config, device, parts=("zero123", "stable_diffusion", "clip_judge")):
    """``trainer.Priors`` holding the full-size random priors, loaded like the real ones."""
    from consistent123.backends import prior_dtype
    from consistent123.priors.base import Priors
    from consistent123.priors.stable_diffusion import StableDiffusionPrior
    from consistent123.priors.zero123 import Zero123Prior

    device = torch.device(device)
    dtype = prior_dtype(cfg, device)
    priors = Priors()
    if "zero123" in parts:
        priors.zero123 = Zero123Prior(zero123_components(device), cfg, device, dtype, "full-size random Zero-1-to-3 XL")
    if "stable_diffusion" in parts:
        priors.stable_diffusion = StableDiffusionPrior(
            stable_diffusion_components(device), cfg, device, dtype, "full-size random Stable Diffusion 2.1-base"
        )
    if "clip_judge" in parts:
        priors.clip_judge = clip_judge(device)
    return priors


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(priors) -> dict[str, int]:
    """``part -> number of parameters`` of every loaded prior (names as ``params <part>`` prints them)."""
    counts = {}
    if priors.stable_diffusion is not None:
        sd = priors.stable_diffusion
        counts.update(sd_unet=_count(sd.unet), sd_vae=_count(sd.vae), sd_text_encoder=_count(sd.text_encoder))
    if priors.zero123 is not None:
        z = priors.zero123
        counts.update(
            zero123_unet=_count(z.unet),
            zero123_vae=_count(z.vae),
            zero123_image_encoder=_count(z.image_encoder),
            zero123_cc_projection=_count(z.cc_projection),
        )
    if priors.clip_judge is not None:
        counts["clip_judge"] = _count(priors.clip_judge.model)
    return counts


def print_parameter_counts(cfg: Config, device="meta") -> dict[str, int]:
    counts = parameter_counts(load_full_size_priors(cfg, device))
    for part, n in counts.items():
        print(f"params {part} {n}")
    return counts
