"""The run page's numbers and labels (eval.run_page); the page in a browser is
tests/integration/test_one_photo.py."""

from __future__ import annotations

import hashlib
import re

from eval.run_page import MODEL_VIEWER_JS, format_metric, metric_label, paper_decimals, stand_in_kind
from eval.tables import load_paper_numbers


def test_metrics_at_the_precision_the_paper_prints():
    paper = load_paper_numbers()
    for metric, decimals in paper_decimals().items():
        assert decimals == paper.loc[paper["metric"] == metric, "decimals"].max()
        shown = format_metric(metric, 17.064808470033903)
        assert len(shown.split(".")[1]) == decimals, (metric, shown)
    assert format_metric("psnr", 17.064808470033903) == "17.065"
    assert format_metric("t_switch", 12) == "12"  # counts stay whole


def test_lpips_label_names_the_random_trunk():
    record = {"details": {"lpips_model": "lpips-v0.1-alex-RANDOM-BACKBONE"}}
    assert metric_label("lpips", record) == "lpips (lpips-v0.1-alex-RANDOM-BACKBONE)"
    assert metric_label("psnr", record) == "psnr"
    assert metric_label("lpips", {"details": {"lpips_model": "lpips-v0.1-alex"}}) == "lpips"


def test_stand_in_kind():
    assert stand_in_kind({"priors": {"priors": "random"}}) == "random"
    assert stand_in_kind({"priors": {"priors": "real"}}) is None
    assert stand_in_kind({"priors": {"priors": "real"}, "run": {"stand_ins": {"oracle": ["3d prior"]}}}) == "oracle"


def test_vendored_viewer_matches_its_provenance():
    provenance = (MODEL_VIEWER_JS.parent / "PROVENANCE").read_text()
    recorded = re.search(r"^file sha256: ([0-9a-f]{64})$", provenance, re.M).group(1)
    assert hashlib.sha256(MODEL_VIEWER_JS.read_bytes()).hexdigest() == recorded
    assert "Apache License" in (MODEL_VIEWER_JS.parent / "LICENSE").read_text()
    assert "</script" not in MODEL_VIEWER_JS.read_text()  # safe to inline
