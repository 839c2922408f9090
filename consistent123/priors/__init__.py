"""Pretrained parts (Zero-1-to-3, Stable Diffusion, CLIP, captioner, depth, segmenter) and SDS."""
