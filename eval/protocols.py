"""The GSO evaluation protocols (config ``eval.protocol``): each one small table of choices.

``paper``        Consistent123's appendix A.2 (the default; Table 2's numbers).
``syncdreamer``  SyncDreamer's ``eval_mesh.py``, reused by Wonder3D, Era3D and EscherNet, whose
                 ``metrics/metrics.py`` + ``metrics/eval_3D_GSO.py`` are its CPU version (the
                 one followed here: SyncDreamer's own needs nvdiffrast on CUDA and the depth maps
                 of its Blender renders of each ground truth).
``spar3d``       SF3D / SPAR3D's Table 1 metrics (Chamfer, F-score at 0.1 / 0.2 / 0.5, PSNR / SSIM
                 / LPIPS of novel views). Their evaluation code is not published: every choice
                 the paper does not state is ours and is marked so.

Every protocol first normalises each mesh by its own bounding box (longest side 1, centred:
``consistent123.meshes.normalise_mesh``, the same formula as SyncDreamer's ``norm_coords`` and
EscherNet's ``normalize_mesh``), after the rigid alignment of ``eval.align``. SyncDreamer's fixed
per-object rotation of the ground truth (``get_gt_rotate_angle``) only puts a scan into
SyncDreamer's own input-view frame; a mesh from any other method needs the alignment instead.

tests/integration/test_protocols.py checks ``syncdreamer`` against values EscherNet's metric code produced,
and ``spar3d``'s Chamfer and F-scores against Open3D's point distances (no reference code is
published), on GSO scans perturbed, decimated and shifted (tests/fixtures/protocol_golden.json,
provenance inside; ``python -m tests.support.golden_pairs`` prints reference vs ours). ``paper`` has no
reference: the authors publish no evaluation code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

SYNCDREAMER = "liuyuan-pal/SyncDreamer@cc373c8ed0ef134149c5019e2384d2264649d0a6"
ESCHERNET = "kxhit/EscherNet@569240f81d729aae413167a898c2af21dc969dd2"
SPAR3D_PAPER = "SPAR3D, Huang et al. 2025 (arXiv:2501.04689), Table 1"


@dataclass(frozen=True)
class Protocol:
    name: str
    objects: str  # the object-list manifest under datasets/
    points: str  # "surface": area-weighted random samples; "vertices": the meshes' own vertices
    point_count: Optional[int]  # None: eval.chamfer_points (paper) or every vertex
    distance: str  # "squared_sum" (paper Eq. 10) | "mean_of_means" (mean of the two one-way mean distances)
    iou: Optional[str]  # "parity_vote" (ours) | "mesh2sdf" (sdf < 0 on mesh2sdf's grid) | None
    iou_resolution: Optional[int]  # None: eval.iou_resolution
    fscore_thresholds: tuple[float, ...]  # in the normalised frame (longest side 1)
    views: str  # "paper18" (A.2's 18 views) | "syncdreamer16" (elevation 30, every 22.5 degrees)
    image_metrics: tuple[str, ...]
    sources: dict = field(default_factory=dict)  # choice -> where it comes from


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol(
        name="paper",
        objects="datasets/gso.tsv",
        points="surface",
        point_count=None,
        distance="squared_sum",
        iou="parity_vote",
        iou_resolution=None,
        fscore_thresholds=(),
        views="paper18",
        image_metrics=("psnr", "lpips", "ssim"),
        sources={
            "normalisation": "paper A.2: each mesh into the unit cube",
            "sampling": "paper A.2 (count not given: eval.chamfer_points)",
            "distance": "paper Eq. 10",
            "iou": "paper A.2: 64^3 volumetric IoU (voxeliser ours: eval/mesh_metrics.solid_voxels)",
            "views": "paper Eq. 11-12: 18 views (eval.gso_azimuths / gso_elevations)",
            "objects": "paper's 20 GSO inputs, lyk412/Consistent123 data/GSO/",
            "ssim": "not in the paper: added for comparison with the community protocols",
        },
    ),
    "syncdreamer": Protocol(
        name="syncdreamer",
        objects="datasets/gso_syncdreamer30.tsv",
        points="vertices",
        point_count=None,
        distance="mean_of_means",
        iou="mesh2sdf",
        iou_resolution=64,
        fscore_thresholds=(),
        views="syncdreamer16",
        image_metrics=("psnr", "ssim", "lpips"),
        sources={
            "normalisation": f"{SYNCDREAMER} eval_mesh.py norm_coords; {ESCHERNET} metrics/eval_3D_GSO.py normalize_mesh",
            "sampling": f"{ESCHERNET} metrics/eval_3D_GSO.py: chamfer(mesh_gt.vertices, mesh_rec.vertices) "
            "(SyncDreamer: points of 16 rendered depth maps, voxel-downsampled at 0.01; needs CUDA)",
            "distance": f"{ESCHERNET} metrics/metrics.py chamfer; {SYNCDREAMER} eval_mesh.py get_chamfer_iou",
            "iou": f"{ESCHERNET} metrics/metrics.py compute_iou: mesh2sdf.compute(size=64, fix=False) < 0",
            "views": f"{SYNCDREAMER} meta_info/camera-16.pkl: elevation 30, 16 azimuths, distance 1.5, "
            "focal 280 px / 256 px (rendered by our rasteriser)",
            "image_metrics": f"{SYNCDREAMER} eval_nvs.py (PSNR, SSIM, LPIPS); SSIM as {ESCHERNET} "
            "metrics/eval_2D_NVS.py (scikit-image; SyncDreamer's own uses torchmetrics' Gaussian window)",
            "objects": "SyncDreamer's 30 GSO objects (byeongjun-park/HarmonyView@9f24f41c README)",
        },
    ),
    "spar3d": Protocol(
        name="spar3d",
        objects="datasets/gso_full.tsv",
        points="surface",
        point_count=10000,
        distance="mean_of_means",
        iou=None,
        iou_resolution=None,
        fscore_thresholds=(0.1, 0.2, 0.5),
        views="paper18",
        image_metrics=("psnr", "ssim", "lpips"),
        sources={
            "metrics": f"{SPAR3D_PAPER}: CD, FS@0.1/0.2/0.5, PSNR, SSIM, LPIPS",
            "objects": f"{SPAR3D_PAPER}: the full GSO set",
            "normalisation": "not published: ours (as paper and syncdreamer)",
            "sampling": "not published: ours (10000 surface points)",
            "distance": "not published: ours (mean of the one-way means, the syncdreamer form)",
            "views": "not published: ours (the paper's 18 views)",
        },
    ),
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"eval.protocol must be one of {sorted(PROTOCOLS)}, not {name!r}") from None


def geometry_metrics(protocol: Protocol) -> list[str]:
    """The geometry metric names a protocol reports (metrics.json and the tables)."""
    names = ["chamfer_distance"]
    if protocol.iou:
        names.append("volumetric_iou")
    names += [fscore_name(t) for t in protocol.fscore_thresholds]
    return names + ["normal_consistency"]


def fscore_name(threshold: float) -> str:
    return f"fscore_{threshold:g}"


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return ", ".join(f"{v:g}" for v in value) or "-"
    return str(value)


def protocol_table(eval_cfg=None) -> str:
    """The choices of every protocol side by side (markdown), then their sources."""
    rows = {
        "objects": lambda p: p.objects,
        "normalisation": lambda p: "each mesh: bbox longest side 1, centred",
        "sampling": lambda p: p.points + (f" ({p.point_count})" if p.point_count else ""),
        "distance": lambda p: p.distance,
        "IoU": lambda p: p.iou and f"{p.iou} {p.iou_resolution or 'eval.iou_resolution'}^3",
        "F-score thresholds": lambda p: p.fscore_thresholds,
        "views": lambda p: p.views,
        "image metrics": lambda p: ", ".join(p.image_metrics),
    }
    names = list(PROTOCOLS)
    selected = eval_cfg.protocol if eval_cfg is not None else None
    header = [n + (" (selected)" if n == selected else "") for n in names]
    lines = ["| choice | " + " | ".join(header) + " |", "|---" * (len(names) + 1) + "|"]
    for label, get in rows.items():
        lines.append(f"| {label} | " + " | ".join(_cell(get(PROTOCOLS[n])) for n in names) + " |")
    lines.append("")
    for n in names:
        lines.append(f"{n}:")
        lines += [f"  {k}: {v}" for k, v in PROTOCOLS[n].sources.items()]
    return "\n".join(lines) + "\n"
