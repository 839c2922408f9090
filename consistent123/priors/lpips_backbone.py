"""The ImageNet backbone LPIPS needs, in torchvision's cache: where it is, and fetching it once.

``fetch-models`` fills it on a connected machine; the metric (``eval/image_metrics.py``) reads it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from consistent123.errors import ModelUnavailableError


def _backbone_weights_url(net: str) -> str:
    from torchvision.models import AlexNet_Weights, SqueezeNet1_1_Weights, VGG16_Weights

    return {"alex": AlexNet_Weights, "vgg": VGG16_Weights, "squeeze": SqueezeNet1_1_Weights}[net].IMAGENET1K_V1.url


def lpips_backbone_path(net: str) -> Path:
    """Where torchvision keeps the ImageNet backbone LPIPS needs (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(_backbone_weights_url(net)).name


def ensure_backbone(net: str, allow_download: bool = True) -> Path:
    """The backbone file in the torch cache; fetched once when allowed, else ModelUnavailableError."""
    weights = lpips_backbone_path(net)
    if weights.is_file():
        return weights
    url = _backbone_weights_url(net)
    hint = (
        f"on a connected machine run `python -c \"import lpips; lpips.LPIPS(net='{net}')\"` (or download {url}) "
        f"and copy the file into {weights.parent}"
    )
    if not allow_download:
        raise ModelUnavailableError(f"{weights}: LPIPS {net} backbone weights not in the torch cache; {hint}")
    try:
        torch.hub.load_state_dict_from_url(url, progress=False, weights_only=True)
    except Exception as exc:  # offline: URLError, socket errors, HTTP errors...
        raise ModelUnavailableError(
            f"{weights}: LPIPS {net} backbone weights not in the torch cache and the download failed "
            f"({exc.__class__.__name__}); {hint}"
        ) from None
    return weights
