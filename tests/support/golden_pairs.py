"""The mesh pairs of the protocol golden values (tests/data/protocol_golden.json).

Built deterministically from the three GSO scans in datasets/known_answer/: each scan against
itself perturbed (Gaussian vertex noise), decimated (vertex clustering), shifted (translated
and rescaled: every protocol's normalisation must remove it), and two pairs of different
objects. The reference implementations were run on exactly these meshes, so the generator
must not change without regenerating the golden values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

SCANS = Path(__file__).resolve().parents[1] / "datasets" / "known_answer"
OBJECTS = ("Android_Figure_Panda", "CHICKEN_RACER", "CITY_TAXI_POLICE_CAR")
NOISE = 0.01  # vertex noise, fraction of the longest side
CLUSTER = 1.0 / 24.0  # decimation cell, fraction of the longest side
SHIFT = (0.3, -0.2, 0.1)  # translation, fraction of the longest side, then x 1.7
SCALE = 1.7


def scan(name: str) -> trimesh.Trimesh:
    return trimesh.load(SCANS / f"{name}.ply", force="mesh", process=False)


def _longest(mesh: trimesh.Trimesh) -> float:
    return float(np.ptp(mesh.vertices, axis=0).max())


def perturbed(mesh: trimesh.Trimesh, seed: int = 0) -> trimesh.Trimesh:
    noise = np.random.default_rng(seed).normal(0.0, NOISE * _longest(mesh), mesh.vertices.shape)
    return trimesh.Trimesh(mesh.vertices + noise, mesh.faces, process=False)


def decimated(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Vertex clustering: vertices snapped to a grid cell's mean, collapsed faces dropped."""
    cell = CLUSTER * _longest(mesh)
    keys = np.floor((mesh.vertices - mesh.vertices.min(0)) / cell).astype(np.int64)
    _, cluster, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    cluster = cluster.reshape(-1)
    means = np.zeros((len(counts), 3))
    np.add.at(means, cluster, mesh.vertices)
    means /= counts[:, None]
    faces = cluster[mesh.faces]
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    first = np.unique(np.sort(faces[keep], axis=1), axis=0, return_index=True)[1]
    faces = faces[keep][np.sort(first)]
    used, faces = np.unique(faces, return_inverse=True)  # drop vertices no face uses any more
    return trimesh.Trimesh(means[used], faces.reshape(-1, 3), process=False)


def shifted(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    return trimesh.Trimesh((mesh.vertices + np.array(SHIFT) * _longest(mesh)) * SCALE, mesh.faces, process=False)


VARIANTS = {"perturbed": perturbed, "decimated": decimated, "shifted": shifted}


def pairs() -> list[tuple[str, trimesh.Trimesh, trimesh.Trimesh]]:
    """(pair name, ground truth, prediction), in the golden file's order."""
    out = []
    for name in OBJECTS:
        gt = scan(name)
        out += [(f"{name}/{variant}", gt, make(gt)) for variant, make in VARIANTS.items()]
    out.append((f"{OBJECTS[0]}/vs/{OBJECTS[1]}", scan(OBJECTS[0]), scan(OBJECTS[1])))
    out.append((f"{OBJECTS[2]}/vs/{OBJECTS[0]}", scan(OBJECTS[2]), scan(OBJECTS[0])))
    return out


def golden_table(path: Path | None = None) -> str:
    """Pair x metric: the reference's value, ours, the difference (markdown)."""
    import json

    from consistent123.config import EvalConfig
    from eval.mesh_metrics import compare_with_protocol
    from eval.protocols import get_protocol

    path = path or Path(__file__).with_name("fixtures") / "protocol_golden.json"
    reference = {row["pair"]: row for row in json.loads(path.read_text())["pairs"]}
    lines = ["| pair | protocol | metric | reference | ours | ours - reference |", "|---|---|---|---|---|---|"]
    for name, gt, pred in pairs():
        for protocol, values in reference[name].items():
            if protocol == "pair":
                continue
            ours = compare_with_protocol(gt, pred, EvalConfig(), get_protocol(protocol))
            for metric, ref in values.items():
                lines.append(
                    f"| {name} | {protocol} | {metric} | {ref:.6f} | {ours[metric]:.6f} | {ours[metric] - ref:+.1e} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m tests.support.golden_pairs
    print(golden_table(), end="")
