"""Defects that only a CUDA run would show, caught on the CPU: the CUDA end-to-end test's input,
random draws from a CUDA generator without a device, perf switches marked applied when nothing
was applied, clip coordinates under autocast, and the backends the benchmarks and evaluation use."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
RANDOM_DRAWS = {"randn", "rand", "randint", "randperm", "normal", "rand_like", "randn_like", "bernoulli", "multinomial"}
# Calls whose generator is the trainer's host generator (Trainer.gen = torch.Generator(), never
# the device one): their results are read on the host (.tolist(), float()) or mixed with host
# tensors, so a device generator there would be a bug of the caller, not of the draw.
HOST_GENERATOR_FUNCTIONS = {
    ("schedule.py", "is_reference_view"),
    ("schedule.py", "draw_novel_view"),
    ("schedule.py", "draw_reference_view"),
    ("occupancy.py", "OccupancyGrid.update"),
}


def _draws_without_device(path: Path):
    """(function qualname, line) of every torch random draw given ``generator=`` but no ``device=``."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, scope):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, scope + [child.name])
                continue
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr in RANDOM_DRAWS
                and isinstance(child.func.value, ast.Name)
                and child.func.value.id == "torch"
            ):
                keywords = {k.arg for k in child.keywords}
                if "generator" in keywords and "device" not in keywords:
                    found.append((".".join(scope), child.lineno))
            visit(child, scope)

    visit(tree, [])
    return found


def test_every_seeded_draw_names_its_device():
    """torch.randn(..., generator=g) allocates on the CPU whatever g's device is, and raises for a
    CUDA generator (perf.device_sampling=true): every draw with a generator names its device,
    except the listed host-generator call sites (and that list has no stale entries)."""
    offenders, exempt_seen = [], set()
    for path in sorted((REPO / "consistent123").rglob("*.py")) + sorted((REPO / "eval").rglob("*.py")):
        for qualname, line in _draws_without_device(path):
            if (path.name, qualname) in HOST_GENERATOR_FUNCTIONS:
                exempt_seen.add((path.name, qualname))
            else:
                offenders.append(f"{path.relative_to(REPO)}:{line} ({qualname})")
    assert offenders == []
    assert exempt_seen == HOST_GENERATOR_FUNCTIONS


def test_the_scan_finds_a_draw_without_device(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "import torch\n"
        "def f(g):\n    return torch.randn(3, generator=g)\n"
        "def h(g):\n    return torch.rand(3, generator=g, device=g.device)\n"
    )
    assert _draws_without_device(src) == [("f", 3)]


def test_end_to_end_input_exists():
    """The CUDA end-to-end test reads the demo's first case; on a GPU node a missing file fails
    all its tests at setup, and only there."""
    from tests.gpu import test_gpu_end_to_end as e2e

    assert e2e.INPUT.is_file(), e2e.INPUT
    import yaml

    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert e2e.INPUT.name.removesuffix("_rgba.png") in demo["benchmarks"]["realfusion15"]["cases"]
    assert e2e.CAPTION


def test_normal_jitter_draws_on_the_generator_device(monkeypatch):
    """render_nerf with normal_perturb draws the jitter with the sampling generator's device."""
    from consistent123.render import volume

    seen = []
    real = torch.randn

    def spy(*args, **kwargs):
        if "generator" in kwargs:
            seen.append(kwargs.get("device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(volume.torch, "randn", spy)
    gen = torch.Generator().manual_seed(0)
    field = _tiny_nerf()
    from consistent123.render.cameras import Camera

    volume.render_nerf(
        field,
        Camera(75.0, 40.0, 3.2, 40.0),
        8,
        8,
        generator=gen,
        normal_perturb=0.1,
        need_normals=True,
        use_occupancy=False,
    )
    assert seen and all(d is not None and torch.device(d) == gen.device for d in seen)


def _tiny_nerf():
    from consistent123.config import load_config
    from consistent123.fields.nerf import NeRFField
    from consistent123.testing import TINY_OVERRIDES

    cfg = load_config(None, TINY_OVERRIDES)
    return NeRFField(cfg.nerf, cfg.hashgrid)


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _two_sheets():
    """Two overlapping squares 0.02 apart in depth: fp16/bf16 clip depths cannot order them."""
    sq = torch.tensor([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    verts = torch.cat(
        [torch.cat([sq, torch.full((4, 1), z)], 1) for z in (0.11, 0.13)]
    )  # the camera looks down the z axis
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    return verts.requires_grad_(), faces


def test_clip_coordinates_stay_fp32_under_autocast(monkeypatch):
    """Under the trainer's autocast (bfloat16 on the CPU stands for fp16 on CUDA) the rasteriser
    gets float32 clip positions equal to the float32 computation, and antialias float32 colour."""
    from consistent123.render import rasterize
    from consistent123.render.cameras import Camera

    seen = {}

    class Recording(rasterize.TorchRasteriser):
        def _rasterize(self, pos, tri, height, width):
            seen["pos"] = pos.detach().clone()
            return super()._rasterize(pos, tri, height, width)

        def _antialias(self, color, rast, pos, tri):
            seen["color"] = color.dtype
            return super()._antialias(color, rast, pos, tri)

    monkeypatch.setattr(rasterize, "make_rasteriser", lambda backend, device: Recording(device))
    verts, faces = _two_sheets()
    cam = Camera(90.0, 0.0, 2.5, 40.0)  # on the +z axis, looking at the origin
    plain = rasterize.render_mesh(verts, faces, cam, 16, 16, backend="torch")
    fp32_pos = seen["pos"]
    bf16 = lambda p, n: torch.ones_like(p).to(torch.bfloat16)  # noqa: E731
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = rasterize.render_mesh(verts, faces, cam, 16, 16, backend="torch", color_fn=bf16)
    assert seen["pos"].dtype == torch.float32
    assert torch.equal(seen["pos"], fp32_pos)
    assert seen["color"] == torch.float32
    assert torch.equal(cast["depth"], plain["depth"])
    cast["alpha"].sum().backward()  # still differentiable in the vertices
    assert verts.grad is not None


def test_perf_switches_apply_per_trainer_on_shared_priors():
    """An eager trainer first, then one asking for channels_last and compile on the same priors
    (what perf/iteration_speed.py does): the second one gets them, and the check the
    benchmark runs sees them; asking for nothing marks nothing."""
    from consistent123.config import load_config
    from consistent123.priors.registry import load_priors
    from consistent123.testing import TINY_OVERRIDES
    from consistent123.training import perf
    from consistent123.training.trainer import Trainer
    from tests.integration.test_perf import synthetic_case
    from tests.support.tiny_models import tiny_models_dir

    base = TINY_OVERRIDES + [f"models.tiny_dir={tiny_models_dir()}", "dynamic.strategy=dynamic_only"]
    fast = ["perf.channels_last=true", "perf.compile=true", "perf.compile_backend=eager"]
    eager_cfg, fast_cfg = load_config(None, base), load_config(None, base + fast)
    case, cpu = synthetic_case(), torch.device("cpu")
    priors = load_priors(eager_cfg, cpu)
    eager = Trainer(eager_cfg, case, priors, cpu)
    optimised = Trainer(fast_cfg, case, priors, cpu)
    conv = next(m for m in priors.zero123.unet.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert priors.stable_diffusion.unet._compiled_call_impl is not None
    assert perf.applied_switches(priors, eager.field) == {
        "zero123": {"channels_last", "compile"},
        "stable_diffusion": {"channels_last", "compile"},
        "mlp": set(),
    }
    assert perf.missing_switches(perf.applied_switches(priors, eager.field), fast_cfg.perf) == ["mlp: ['compile']"]
    applied = perf.applied_switches(priors, optimised.field)
    assert applied["zero123"] == applied["stable_diffusion"] == {"channels_last", "compile"}
    assert applied["mlp"] == {"compile"}
    assert perf.missing_switches(applied, fast_cfg.perf) == []
    assert perf.missing_switches(applied, eager_cfg.perf) == []


def _load_benchmark(name: str):
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "perf" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_render_speed_times_the_resolved_backends(monkeypatch, capsys):
    """Where the CUDA libraries resolve (faked here), every measurement gets them: the hash grid
    and NeRF lines tcnn, the rasteriser lines nvdiffrast (before, torch whatever was installed)."""
    from consistent123 import backends

    bench = _load_benchmark("render_speed")
    cuda_name = {"hashgrid": "tcnn", "rasteriser": "nvdiffrast"}
    monkeypatch.setattr(backends, "resolve", lambda part, requested, device: cuda_name[part])
    used = []
    monkeypatch.setattr(bench, "hashgrid_forward_backward_ms", lambda a, n: used.append(a.hashgrid) or (1.0, ""))
    monkeypatch.setattr(bench, "nerf_forward_backward_ms", lambda a, *rest: used.append(a.hashgrid) or (1.0, ""))
    monkeypatch.setattr(bench, "rasteriser_forward_backward_ms", lambda a, n, r="torch": used.append(r) or (1.0, ""))
    assert bench.main(["--device", "cpu", "--runs", "1"]) == 0
    assert used.count("tcnn") == 6 and used.count("nvdiffrast") == 2, used
    assert "hash grid tcnn, rasteriser nvdiffrast" in capsys.readouterr().out


def test_gso_views_render_with_the_configured_rasteriser():
    """The evaluation's multi-view renders take dmtet.rasteriser_backend (no silent auto): the
    backend is a required argument and eval/evaluate.py passes the configured one."""
    import inspect

    from eval.gso_views import multiview_metrics

    assert inspect.signature(multiview_metrics).parameters["backend"].default is inspect.Parameter.empty
    tree = ast.parse((REPO / "eval" / "evaluate.py").read_text())
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "multiview_metrics"
    ]
    assert calls
    for call in calls:
        backend = next(k.value for k in call.keywords if k.arg == "backend")
        assert ast.unparse(backend) == "cfg.dmtet.rasteriser_backend"


def test_gso_views_refuse_a_named_rasteriser_that_cannot_run():
    """rasteriser_backend=nvdiffrast on a CPU is the one-line backend error, not a torch render."""
    import trimesh

    from consistent123.backends import BackendError
    from consistent123.config import Config
    from eval.gso_views import multiview_metrics

    box = trimesh.creation.box()
    with pytest.raises(BackendError, match="nvdiffrast"):
        multiview_metrics(box, box, Config().eval, None, backend="nvdiffrast", progress=False, device="cpu")
