"""Every pretrained part at tiny size with random weights.

Same classes, same on-disk formats as the real checkpoints, so the CPU demo and the tests go
through exactly the loaders the real weights use:

    DIR/zero123/            diffusers layout of a Zero-1-to-3 (XL) repo: unet (8 input channels),
                            vae, image_encoder, feature_extractor, scheduler, clip_camera_projection.
                            It stands in for every 3D prior variant (consistent123/priors/variants.py):
                            Zero-1-to-3 XL, Zero-1-to-3 and Stable Zero123 share this architecture
                            and the projection's 4-entry camera input; what differs, the camera
                            vector's layout, is the variant's, so each layout runs on these weights.
    DIR/stable_diffusion/   StableDiffusionPipeline.save_pretrained (unet, vae, text_encoder,
                            tokenizer, scheduler)
    DIR/clip/               open_clip folder: open_clip_config.json + open_clip_model.safetensors
    DIR/...                 captioner, depth estimator, segmenter (consistent123.priors.standins.vision)
    DIR/tiny_models.json    manifest, written last: its presence means the folder is complete;
                            it also marks every model it lists as random-weight (consistent123.priors.provenance.is_random_weight)

Seeded and deterministic; the whole build takes seconds and a few MB.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import logging
import os
import warnings
from pathlib import Path

import torch

from consistent123.io import atomic_dir, atomic_write_json
from consistent123.priors.standins.constants import CLIP_MEAN, CLIP_STD, MANIFEST, SD_BETAS, seeded

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Tiny sizes. The real Zero-1-to-3 uses CLIP ViT-L/14 (projection 768, cc_projection 772 -> 768);
# here the image-embedding / cross-attention width is TINY_DIM and cc_projection TINY_DIM+4 -> TINY_DIM.
TINY_DIM = 32
TINY_TEXT_DIM = 32
TINY_CLIP_IMAGE = 32
TINY_MERGES = 1000  # BPE merges kept from CLIP's own vocabulary (open_clip ships it)


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__


# ---------------------------------------------------------------- shared pieces
def _tiny_vae():
    from diffusers import AutoencoderKL

    # Four blocks = three downsamplings: the same 8x latent factor as the real VAE.
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=TINY_CLIP_IMAGE,
    )


def _tiny_unet(in_channels: int, cross_attention_dim: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
    )


def _tiny_clip_tokenizer():
    """A CLIPTokenizer on CLIP's real BPE truncated to TINY_MERGES merges (built offline)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 1 + TINY_MERGES]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    tokens = (
        symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    )
    vocab = {t: i for i, t in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77), vocab, merges


def _save_tokenizer(tokenizer, vocab: dict, merges: list, folder: Path) -> None:
    tokenizer.save_pretrained(folder)
    # vocab.json + merges.txt as in the real repos, for tokenizer back-ends that read them.
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")


# ---------------------------------------------------------------- Zero-1-to-3
def build_tiny_zero123(out: Path) -> Path:
    from diffusers import DDIMScheduler
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    out.mkdir(parents=True, exist_ok=True)
    with seeded(1):
        _tiny_unet(8, TINY_DIM).save_pretrained(out / "unet")
    with seeded(2):
        _tiny_vae().save_pretrained(out / "vae")
    with seeded(3):
        enc = CLIPVisionModelWithProjection(
            CLIPVisionConfig(
                hidden_size=32,
                intermediate_size=64,
                projection_dim=TINY_DIM,
                num_hidden_layers=2,
                num_attention_heads=4,
                image_size=TINY_CLIP_IMAGE,
                patch_size=8,
            )
        )
        enc.save_pretrained(out / "image_encoder")
    CLIPImageProcessor(
        size={"shortest_edge": TINY_CLIP_IMAGE},
        crop_size={"height": TINY_CLIP_IMAGE, "width": TINY_CLIP_IMAGE},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    ).save_pretrained(out / "feature_extractor")
    DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=False, steps_offset=1).save_pretrained(
        out / "scheduler"
    )
    # cc_projection: a diffusers-style folder holding one Linear(embedding_dim + 4 -> embedding_dim).
    with seeded(4):
        proj = torch.nn.Linear(TINY_DIM + 4, TINY_DIM)
    (out / "clip_camera_projection").mkdir()
    save_file(
        {"proj.weight": proj.weight.detach().contiguous(), "proj.bias": proj.bias.detach().contiguous()},
        str(out / "clip_camera_projection" / "diffusion_pytorch_model.safetensors"),
    )
    (out / "clip_camera_projection" / "config.json").write_text(
        json.dumps(
            {
                "_class_name": "CLIPCameraProjection",
                "_diffusers_version": _diffusers_version(),
                "embedding_dim": TINY_DIM,
                "additional_embeddings": 4,
            },
            indent=2,
        )
    )
    (out / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "Zero123Pipeline",
                "_diffusers_version": _diffusers_version(),
                "clip_camera_projection": ["zero123", "CLIPCameraProjection"],
                "feature_extractor": ["transformers", "CLIPImageProcessor"],
                "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
                "scheduler": ["diffusers", "DDIMScheduler"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            },
            indent=2,
        )
    )
    return out


# ---------------------------------------------------------------- Stable Diffusion
def build_tiny_stable_diffusion(out: Path) -> Path:
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer, vocab, merges = _tiny_clip_tokenizer()
    with seeded(5):
        unet = _tiny_unet(4, TINY_TEXT_DIM)
    with seeded(6):
        vae = _tiny_vae()
    with seeded(7):
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(vocab),
                hidden_size=TINY_TEXT_DIM,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
    scheduler = PNDMScheduler(**SD_BETAS, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)
    _save_tokenizer(tokenizer, vocab, merges, out / "tokenizer")
    return out


# ---------------------------------------------------------------- open_clip
def build_tiny_clip(out: Path) -> Path:
    import open_clip
    from safetensors.torch import save_file

    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": TINY_CLIP_IMAGE, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        # The text tower keeps CLIP's full 49408-token vocabulary: open_clip's bundled tokenizer emits it.
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 2},
    }
    with seeded(8):
        model = open_clip.CLIP(**model_cfg)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    (out / "open_clip_config.json").write_text(
        json.dumps(
            {
                "model_cfg": model_cfg,
                "preprocess_cfg": {
                    "mean": CLIP_MEAN,
                    "std": CLIP_STD,
                    "interpolation": "bicubic",
                    "resize_mode": "shortest",
                },
            },
            indent=2,
        )
    )
    return out


# ---------------------------------------------------------------- all of them
BUILDERS = {
    "zero123": build_tiny_zero123,
    "stable_diffusion": build_tiny_stable_diffusion,
    "clip": build_tiny_clip,
}


def _vision_builder():
    try:
        from consistent123.priors.standins.vision import build_tiny_vision_models
    except ImportError as exc:  # built by another module; the diffusion priors do not need it
        warnings.warn(
            f"tiny captioner/depth/segmenter not built: consistent123.priors.standins.vision unavailable ({exc})"
        )
        return None
    return build_tiny_vision_models


def _read_manifest(root: Path) -> dict | None:
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != FORMAT_VERSION:
        return None
    models = {name: root / rel for name, rel in data.get("models", {}).items()}
    return models if all(p.exists() for p in models.values()) else None


def build_tiny_models(root: Path) -> dict[str, Path]:
    """Build every tiny model under ``root`` (each part renamed into place when complete)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, builder in BUILDERS.items():
        with atomic_dir(root / name) as tmp:
            builder(tmp)
        paths[name] = root / name
    vision = _vision_builder()
    if vision is not None:
        paths.update({k: Path(v) for k, v in vision(root).items()})
    manifest = {
        "format": FORMAT_VERSION,
        "weights": "random",
        "models": {k: os.path.relpath(v, root) for k, v in paths.items()},
    }
    atomic_write_json(root / MANIFEST, manifest)
    return paths


def ensure_tiny_models(root: Path) -> dict[str, Path]:
    """Build the tiny models once; later calls (and racing processes) reuse the finished folder."""
    root = Path(root).expanduser()
    models = _read_manifest(root)
    if models is not None and _complete(models):
        return models
    root.mkdir(parents=True, exist_ok=True)
    # One builder at a time; the others wait, then find the manifest.
    with open(root / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            models = _read_manifest(root)
            if models is not None and _complete(models):
                return models
            log.info("building tiny models in %s", root)
            return build_tiny_models(root)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _complete(models: dict) -> bool:
    """Complete = our parts, plus the vision parts whenever the vision module is importable."""
    if not all(k in models for k in BUILDERS):
        return False
    try:
        import consistent123.priors.standins.vision  # noqa: F401
    except ImportError:
        return True
    return all(k in models for k in ("captioner", "depth", "segmenter"))
