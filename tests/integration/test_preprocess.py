"""Preprocessing on the real benchmark inputs, with tiny models where a model is needed, and bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_erosion
from skimage.measure import label

from consistent123.cli import main as cli_main
from consistent123.config import load_config
from consistent123.errors import InputError
from consistent123.preprocess.mask import drop_specks
from consistent123.preprocess.pipeline import OUTPUT_FILES, preprocess_image
from consistent123.priors.standins.vision import build_tiny_vision_models
from consistent123.priors.vision import load_captioner, load_depth_estimator, load_segmenter
from consistent123.testing import C10, RF15
from tests.support.case_images import bbox_centre, bbox_fill, benchmark_cases, read_depth, read_rgba

CFG = load_config()
THRESHOLD = CFG.preprocess.alpha_threshold
FILL = 1.0 - CFG.preprocess.border_ratio


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and lose a lot to contention on a shared 2-core runner."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The three tiny vision models, loaded through the real loaders."""
    paths = build_tiny_vision_models(tmp_path_factory.mktemp("tiny_vision"))
    return {
        "captioner": load_captioner(str(paths["captioner"]), "cpu"),
        "depth": load_depth_estimator(str(paths["depth"]), "cpu"),
        "segmenter": load_segmenter(str(paths["segmenter"]), "cpu"),
    }


def check_outputs(out: Path, max_zero_in_mask: float = 0.02) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Common checks of one output folder; returns rgba, mask, depth."""
    rgba = read_rgba(out / "rgba.png")
    assert rgba.shape == (CFG.preprocess.size, CFG.preprocess.size, 4)
    mask = rgba[..., 3] > THRESHOLD
    assert abs(bbox_fill(mask) - FILL) <= 0.02, bbox_fill(mask)
    cy, cx = bbox_centre(mask)
    assert abs(cy - (CFG.preprocess.size - 1) / 2) <= 2 and abs(cx - (CFG.preprocess.size - 1) / 2) <= 2
    with Image.open(out / "depth.png") as im:
        assert im.mode.startswith("I;16") and im.size == (CFG.preprocess.size,) * 2
    depth = read_depth(out / "depth.png")
    assert depth[~mask].max() == 0.0  # 0 outside the mask
    assert depth[mask].min() == 0.0 and depth[mask].max() == 1.0  # normalised inside it
    # nonzero region = the mask: only the farthest pixels are 0 (or where a given depth map had 0)
    assert (depth[mask] == 0).mean() <= max_zero_in_mask
    caption = (out / "caption.txt").read_text()
    assert caption.strip() and caption.count("\n") == 1
    return rgba, mask, depth


# ----------------------------------------------------------------- the 25 published cases
@pytest.mark.parametrize("case", benchmark_cases(), ids=lambda c: c[0])
def test_published_cases_with_their_depth(case, tmp_path, tiny):
    name, rgba_path, depth_path, caption = case
    models = {"captioner": tiny["captioner"]}  # C10 has no published prompt; RF15 must not use it
    record = preprocess_image(rgba_path, tmp_path / "out", CFG, caption=caption, depth_path=depth_path, models=models)
    # Normalising maps the farthest object pixels to 0; published 8-bit maps saturate there, so up
    # to their share of pixels at the minimum may be 0, nothing more.
    with Image.open(rgba_path) as im, Image.open(depth_path) as dm:
        given = np.asarray(dm)[np.asarray(im)[..., 3] > THRESHOLD]
        given_zero = (given == given.min()).mean()
    rgba, mask, depth = check_outputs(tmp_path / "out", max_zero_in_mask=0.02 + 4 * given_zero)

    assert record["sources"]["mask"] == "alpha channel"
    assert record["sources"]["depth"].startswith("file")
    assert set(record["models"]) == ({"captioner"} if caption is None else set())
    if caption is not None:
        assert (tmp_path / "out" / "caption.txt").read_text().strip() == caption
    # The recorded crop window, applied here by Pillow to the published alpha and depth, must give
    # what was written: fails if the depth were cropped, scaled or flipped unlike the image.
    w = record["crop_window"]
    box = (w["left"], w["top"], w["left"] + w["side"], w["top"] + w["side"])
    ref_alpha = through_window(rgba_path, box, "A") > THRESHOLD
    assert (mask & ref_alpha).sum() / (mask | ref_alpha).sum() > 0.97
    ref_depth = through_window(depth_path, box, "L")
    inner = binary_erosion(mask & ref_alpha, iterations=4)  # away from the edge, where the two resamplings differ
    assert np.corrcoef(depth[inner], ref_depth[inner])[0, 1] > 0.97


def through_window(path: Path, box: tuple[int, int, int, int], channel: str) -> np.ndarray:
    size = CFG.preprocess.size
    with Image.open(path) as im:
        band = im.convert("RGBA").getchannel("A") if channel == "A" else im.convert("L")
        return np.asarray(band.crop(box).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64)


@pytest.mark.parametrize("photo", [C10 / "29.jpg", C10 / "avatar.jpg", RF15 / "teddy_bear.png"], ids=lambda p: p.name)
def test_raw_photos_through_tiny_models(photo, tmp_path, tiny):
    """No alpha, no caption, no depth: segmenter, captioner and depth estimator all run."""
    record = preprocess_image(photo, tmp_path / "out", CFG, models=tiny)
    check_outputs(tmp_path / "out")
    assert record["sources"] == {"mask": "segmenter", "caption": "captioner", "depth": "depth estimator"}
    assert set(record["models"]) == {"captioner", "segmenter", "depth"}
    # The crop window is centred on the mask found in the original photo.
    window = record["crop_window"]
    x0, y0, x1, y1 = window["bbox"]
    assert window["left"] + window["side"] / 2 == pytest.approx((x0 + x1) / 2, abs=1)


def test_user_command_from_the_brief(tmp_path):
    """`preprocess banana_rgba.png --depth banana_depth.png --caption ...` needs no model at all."""
    out = tmp_path / "banana"
    rc = cli_main(
        [
            "preprocess",
            str(RF15 / "banana_rgba.png"),
            "--depth",
            str(RF15 / "banana_depth.png"),
            "--caption",
            "a half-peeled yellow banana",
            "--out",
            str(out),
            # any model load would now fail: none may happen
            "--set",
            "models.segmenter=/nonexistent",
            "--set",
            "models.depth=/nonexistent",
            "--set",
            "models.captioner=/nonexistent",
        ]
    )
    assert rc == 0
    check_outputs(out)
    assert json.loads((out / "preprocess.json").read_text())["models"] == {}


def test_given_depth_at_another_resolution_is_resized_with_the_image(tmp_path):
    small = tmp_path / "depth_256.png"
    Image.open(RF15 / "cactus_depth.png").resize((256, 256), Image.Resampling.BILINEAR).save(small)
    preprocess_image(RF15 / "cactus_rgba.png", tmp_path / "a", CFG, caption="a cactus", depth_path=small)
    preprocess_image(
        RF15 / "cactus_rgba.png", tmp_path / "b", CFG, caption="a cactus", depth_path=RF15 / "cactus_depth.png"
    )
    _, mask, depth_a = check_outputs(tmp_path / "a")
    depth_b = read_depth(tmp_path / "b" / "depth.png")
    assert np.corrcoef(depth_a[mask], depth_b[mask])[0, 1] > 0.98


def test_off_centre_object_is_recentred_and_depth_follows(tmp_path):
    """Shift and shrink a published case inside a larger, non-square canvas: same result as the original."""
    rgba = Image.open(C10 / "yellow_shoe_rgba.png")
    depth = Image.open(C10 / "yellow_shoe_depth.png")
    canvas, dcanvas = Image.new("RGBA", (900, 700), (0, 0, 0, 0)), Image.new("L", (900, 700), 0)
    small, dsmall = (
        rgba.resize((300, 300), Image.Resampling.LANCZOS),
        depth.resize((300, 300), Image.Resampling.BILINEAR),
    )
    canvas.paste(small, (560, 20)), dcanvas.paste(dsmall, (560, 20))
    canvas.save(tmp_path / "shoe.png"), dcanvas.save(tmp_path / "shoe_depth.png")
    preprocess_image(
        tmp_path / "shoe.png", tmp_path / "moved", CFG, caption="a yellow shoe", depth_path=tmp_path / "shoe_depth.png"
    )
    preprocess_image(
        C10 / "yellow_shoe_rgba.png",
        tmp_path / "orig",
        CFG,
        caption="a yellow shoe",
        depth_path=C10 / "yellow_shoe_depth.png",
    )
    _, mask_m, depth_m = check_outputs(tmp_path / "moved")
    _, mask_o, depth_o = check_outputs(tmp_path / "orig")
    assert (mask_m & mask_o).sum() / (mask_m | mask_o).sum() > 0.9
    both = mask_m & mask_o
    assert np.corrcoef(depth_m[both], depth_o[both])[0, 1] > 0.95


def test_exif_orientation_is_applied(tmp_path, tiny):
    """A file stored sideways with an EXIF rotation gives the same result as the upright file."""
    upright = Image.open(C10 / "23_rgba.png").crop((0, 0, 256, 200))  # non-square, so a missed rotation shows
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "sideways.png", exif=exif)
    for name in ("upright", "sideways"):
        preprocess_image(
            tmp_path / f"{name}.png",
            tmp_path / f"out_{name}",
            CFG,
            caption="a toy",
            depth_path=None,
            models={"depth": tiny["depth"]},
        )
    a, b = read_rgba(tmp_path / "out_upright" / "rgba.png"), read_rgba(tmp_path / "out_sideways" / "rgba.png")
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_segmenter_specks_are_dropped_but_every_real_part_kept():
    """C10 case 23's mask has two separate parts: both survive; a stray 3x3 false positive does not."""
    mask = read_rgba(C10 / "23_rgba.png")[..., 3] > THRESHOLD
    assert label(mask, connectivity=2).max() == 2
    noisy = mask.copy()
    noisy[5:8, 5:8] = True
    cleaned = drop_specks(noisy)
    assert np.array_equal(cleaned, mask)
    assert bbox_fill(cleaned) < bbox_fill(noisy)


# ----------------------------------------------------------------- bad inputs
def _transparent(path: Path) -> None:
    Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(path)


def _tiny_image(path: Path) -> None:
    Image.new("RGB", (1, 1), (255, 0, 0)).save(path)


def _truncated(path: Path) -> None:
    data = (RF15 / "banana_rgba.png").read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_IMAGES = {
    "empty.png": lambda p: p.write_bytes(b""),
    "text.png": lambda p: p.write_text("this is not an image\n"),
    "truncated.png": _truncated,
    "transparent.png": _transparent,
    "one_pixel.png": _tiny_image,
}


def _assert_failed_cleanly(rc: int, err: str, must_name: str, out: Path) -> None:
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert must_name in lines[0]
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_bad_image_fails_with_one_line(name, tmp_path, capsys):
    path = tmp_path / name
    BAD_IMAGES[name](path)
    out = tmp_path / "out"
    rc = cli_main(["preprocess", str(path), "--out", str(out)])
    _assert_failed_cleanly(rc, capsys.readouterr().err, name, out)


@pytest.mark.parametrize("caption", ["", "   \n\t "])
def test_empty_caption_fails(caption, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli_main(
        [
            "preprocess",
            str(RF15 / "donut_rgba.png"),
            "--caption",
            caption,
            "--depth",
            str(RF15 / "donut_depth.png"),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    _assert_failed_cleanly(rc, err, "donut_rgba.png", out)
    assert "caption" in err and "empty" in err


def test_depth_of_wrong_shape_fails(tmp_path, capsys):
    bad = tmp_path / "wide_depth.png"
    Image.new("L", (300, 100), 128).save(bad)
    out = tmp_path / "out"
    rc = cli_main(
        [
            "preprocess",
            str(RF15 / "donut_rgba.png"),
            "--caption",
            "two doughnuts",
            "--depth",
            str(bad),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    _assert_failed_cleanly(rc, err, "wide_depth.png", out)
    assert "300x100" in err and "512x512" in err


def test_bad_depth_files_raise_input_error(tmp_path):
    empty = tmp_path / "empty_depth.png"
    empty.write_bytes(b"")
    colour = tmp_path / "colour_depth.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)).save(colour)
    for bad in (empty, colour, tmp_path / "missing_depth.png"):
        with pytest.raises(InputError, match=bad.name):
            preprocess_image(RF15 / "donut_rgba.png", tmp_path / "out", CFG, caption="donuts", depth_path=bad)
    assert not (tmp_path / "out").exists()


def test_console_script_prints_one_line(tmp_path):
    """The real process: logging and all, a truncated PNG gives exit 2 and one stderr line."""
    path = tmp_path / "cut.png"
    _truncated(path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "consistent123.cli", "preprocess", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    _assert_failed_cleanly(proc.returncode, proc.stderr, "cut.png", out)
    assert "truncated" in proc.stderr
    for name in OUTPUT_FILES:
        assert not (out / name).exists()
