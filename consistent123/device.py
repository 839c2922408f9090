"""Which torch device a run uses: ``train.device`` ("auto" = CUDA when available)."""
import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
