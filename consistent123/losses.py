"""Every loss of the method in one place (spec §4).

Reference view (paper Eq. 1-3):
L_rec = lambda_rgb * MSE(rgb) + lambda_mask * MSE(mask) + lambda_depth * (1 - Pearson(depth)).
Pearson makes the depth term blind to the monocular depth's unknown scale and shift.

Regularisers in R's forms (nerf/utils.py train_step, nerf/renderer.py): entropy of the
per-sample weights, orientation, 3D and 2D normal smoothness for the NeRF; normal consistency
and the uniform Laplacian for the mesh. Their weights and ramps come from the iteration plan
(``schedule.plan``) and the config; the fields hand in what they rendered.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from consistent123.config import LossConfig


# ---------------------------------------------------------------- reference view (P Eq. 1-3)
def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    a = a.flatten().float() - a.float().mean()
    b = b.flatten().float() - b.float().mean()
    return (a * b).sum() / (a.norm() * b.norm() + eps)


def reference_losses(render: dict, target: dict, loss_cfg: LossConfig, lambda_depth: float) -> dict[str, torch.Tensor]:
    """Weighted terms of L_rec; ``render`` and ``target`` hold HWC tensors of the same size."""
    mask = target["mask"]
    terms = {
        "rgb": loss_cfg.lambda_rgb * F.mse_loss(render["rgb"].float(), target["rgb"]),
        "mask": loss_cfg.lambda_mask * F.mse_loss(render["opacity"].float(), mask),
    }
    valid = target["valid_depth"][..., 0]
    if lambda_depth > 0 and int(valid.sum()) > 8 and "depth" in render:
        terms["depth"] = lambda_depth * (1.0 - pearson(render["depth"][..., 0][valid], target["depth"][..., 0][valid]))
    return terms


# ---------------------------------------------------------------- NeRF regularisers
def _mean(x: torch.Tensor) -> torch.Tensor:
    return x.float().mean() if x.numel() else x.float().sum()  # a view that hits nothing adds 0


def entropy(sample_weights: torch.Tensor) -> torch.Tensor:
    """R's entropy: binary entropy (base 2) of the per-sample weights clamped to [1e-5, 1 - 1e-5], mean."""
    a = sample_weights.float().clamp(1e-5, 1 - 1e-5)
    return _mean(-a * torch.log2(a) - (1 - a) * torch.log2(1 - a))


def orientation(out: dict) -> torch.Tensor:
    """R's orientation loss (renderer.py, cuda-ray path): mean over samples of sg(w) relu(n . d)^2."""
    if out.get("orient_samples") is None:
        raise ValueError("orientation needs a render with normals (need_normals=True or a shaded mode)")
    return _mean(out["orient_samples"])


def normal_smoothness_3d(out: dict) -> torch.Tensor:
    """R's loss_normal_perturb: mean |n(x) - n(x + perturb * eps)| at the evaluated sample points."""
    return _mean((out["sample_normals"] - out["normals_perturbed"]).abs())


def neighbour_differences(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of vertically and of horizontally neighbouring pixels of [H, W, C]."""
    return (image[1:] - image[:-1]).square().mean() + (image[:, 1:] - image[:, :-1]).square().mean()


def normal_smoothness_2d(out: dict, form: str, blur_kernel: int) -> torch.Tensor:
    """2D normal smoothness of a render (``loss.normal_smooth_2d_form``).

    "blur_and_neighbours" (R, nerf/utils.py train_step): on the normal image in [0, 1] composited
    with stopped weights, the MSE to its own 9-pixel Gaussian blur (stopped) plus the neighbour
    differences (``blur_kernel`` pixels wide, torchvision's default sigma for it); "neighbours":
    the neighbour differences of the composited normals in [-1, 1].
    """
    if form == "neighbours":
        return neighbour_differences(out["normals"])
    from torchvision.transforms.functional import gaussian_blur

    image = out["normal_image"]
    blurred = gaussian_blur(image.detach().permute(2, 0, 1), kernel_size=blur_kernel).permute(1, 2, 0)
    return F.mse_loss(image, blurred) + neighbour_differences(image)


# ---------------------------------------------------------------- mesh regularisers
def _edge_faces(faces: torch.Tensor) -> torch.Tensor:
    """[E,2] the two faces on each manifold edge (edges on one or >2 faces are left out)."""
    f = faces.long()
    edges = torch.sort(torch.stack([f, f.roll(-1, dims=1)], -1).reshape(-1, 2), dim=1).values
    # 1-D keys: torch.unique(dim=0) is far slower than unique on a flat int64 tensor.
    _, inv, counts = torch.unique(
        edges[:, 0] * (int(f.max()) + 1) + edges[:, 1], return_inverse=True, return_counts=True
    )
    order = torch.argsort(inv, stable=True)
    face_of = torch.arange(f.shape[0], device=f.device).repeat_interleave(3)[order]
    starts = torch.cumsum(counts, 0) - counts
    two = torch.nonzero(counts == 2).squeeze(1)
    return torch.stack([face_of[starts[two]], face_of[starts[two] + 1]], -1)


def normal_consistency(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean (1 - cos) between the normals of faces sharing an edge (as nvdiffrec/R)."""
    if faces.shape[0] == 0:
        return verts.sum() * 0
    v = verts[faces.long()]
    n = F.normalize(torch.linalg.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], dim=-1), dim=-1, eps=1e-12)
    with torch.no_grad():
        pairs = _edge_faces(faces)
    if pairs.shape[0] == 0:
        return verts.sum() * 0
    cos = (n[pairs[:, 0]] * n[pairs[:, 1]]).sum(-1).clamp(-1, 1)
    return (1 - cos).abs().mean()


def laplacian_smooth(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean norm of the uniform Laplacian (degree * v_i - sum of neighbours), as R."""
    if faces.shape[0] == 0:
        return verts.sum() * 0
    f = faces.long()
    with torch.no_grad():
        edges = torch.sort(torch.stack([f, f.roll(-1, dims=1)], -1).reshape(-1, 2), dim=1).values
        n = int(f.max()) + 1
        keys = torch.unique(edges[:, 0] * n + edges[:, 1])
    i, j = torch.div(keys, n, rounding_mode="floor"), keys % n
    d = verts[i] - verts[j]
    lap = torch.zeros_like(verts).index_add(0, i, d).index_add(0, j, -d)
    used = torch.zeros(verts.shape[0], dtype=torch.bool, device=verts.device)
    used[f.reshape(-1)] = True
    return lap[used].norm(dim=-1).mean()
