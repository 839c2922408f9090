"""Which torch device a run uses: ``train.device`` ("auto" = CUDA when available)."""

import torch


def resolve_device(name=None) -> torch.device:
    """ "auto" or None -> CUDA when available, else CPU; anything else as torch names it."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
