"""The SLURM check's tree comparison: timings may differ between two runs, results may not."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("ci_compare", Path(__file__).parents[2] / ".ci/slurm/compare.py")
compare = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(compare)


def _tree(root: Path, metrics: dict) -> Path:
    (root / "run").mkdir(parents=True)
    (root / "run/metrics.json").write_text(json.dumps(metrics))
    return root


def test_timings_and_paths_may_differ(tmp_path):
    a = _tree(tmp_path / "a", {"psnr": 20.0, "time_s": 66.4, "mesh_path": str(tmp_path / "a/run/mesh.glb")})
    b = _tree(tmp_path / "b", {"psnr": 20.0, "time_s": 76.7, "mesh_path": "/elsewhere/mesh.glb"})
    assert compare.main(str(a), str(b)) == 0


def test_a_different_metric_is_a_mismatch(tmp_path, capsys):
    a = _tree(tmp_path / "a", {"psnr": 20.0, "time_s": 1.0})
    b = _tree(tmp_path / "b", {"psnr": 20.1, "time_s": 1.0})
    assert compare.main(str(a), str(b)) == 1
    assert "MISMATCH run/metrics.json.psnr" in capsys.readouterr().out


def test_a_file_missing_from_one_tree_is_a_mismatch(tmp_path):
    a = _tree(tmp_path / "a", {"psnr": 20.0})
    b = _tree(tmp_path / "b", {"psnr": 20.0})
    (a / "run/boundary.json").write_text("{}")
    assert compare.main(str(a), str(b)) == 1
