"""Size of a mesh-phase checkpoint's DMTet state, with and without the tet-grid buffers.

    python perf/checkpoint_size.py [--grid 256]

The grid (vertices and tetrahedra) is rebuilt from dmtet.tet_grid_size, so checkpoints leave it
out; the first figure is what they held when it was a persistent buffer.
"""

from __future__ import annotations

import argparse
import io

import torch

from consistent123.config import Config
from consistent123.fields.dmtet import DMTetField


def saved_mib(state: dict) -> float:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=Config().dmtet.tet_grid_size)
    args = parser.parse_args()
    cfg = Config()
    field = DMTetField(
        cfg.dmtet.model_copy(update={"tet_grid_size": args.grid}),
        cfg.hashgrid.model_copy(update={"backend": "torch"}),
        cfg.nerf.bound,
    )
    state = field.state_dict()
    with_grid = dict(state, base_verts=field.base_verts, tets=field.tets)
    print(
        f"tet_grid_size={args.grid}  with tet buffers: {saved_mib(with_grid):7.1f} MiB  "
        f"checkpointed now: {saved_mib(state):7.1f} MiB"
    )


if __name__ == "__main__":
    main()
