"""Tiny random-weight captioner (BLIP), depth estimator (DPT) and segmenter (CLIPSeg), saved
in the real models' formats so ``consistent123.priors.vision`` loads them like the real ones."""

from __future__ import annotations

import json
from pathlib import Path

from consistent123.priors.standins.constants import SEED, seeded

# Words for the tiny captioner's vocabulary: enough for a random model to emit "captions".
_TINY_WORDS = (
    "a an the of on in with and photo picture object toy statue figure shoe cake teapot bird cat dog "
    "fish banana flower plant pot cup chair red green blue yellow brown black white pink grey small "
    "large wooden metal sitting standing"
).split()


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


def build_tiny_vision_models(root: Path, seed: int = SEED) -> dict[str, Path]:
    """Build the tiny captioner, depth estimator and segmenter under ``root/<key>``; return their folders."""
    root = Path(root)
    out: dict[str, Path] = {}
    for key, builder in _TINY_BUILDERS.items():
        folder = root / key
        folder.mkdir(parents=True, exist_ok=True)
        with seeded(seed):
            builder(folder)
        (folder / "tiny.json").write_text(json.dumps({"kind": key, "seed": seed, "random_weights": True}) + "\n")
        out[key] = folder
    return out
