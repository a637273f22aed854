"""`cctvsr evaluate`: the paper's protocol on real faces, re-usable LR sets, model directories with
and without --fidelity, and one-line refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cctvsr.cli import app
from cctvsr.degrade.pool import DegradationPool
from cctvsr.evaluate.protocols import EvalPair, load_pairs, make_pairs, make_protocol, save_pairs
from cctvsr.evaluate.report import label_lines, sheet
from cctvsr.evaluate.scoring import Evaluation, Method, MethodResult
from cctvsr.images import read_image
from cctvsr.sr.weights import save_model_dir
from cctvsr.jobs.finetune import FinetuneOptions, run
from tests.conftest import tiny_weights
from tests.test_degrade_pool import gaussian_kernels, gaussian_noise

torch.set_num_threads(2)
runner = CliRunner()
# Six real portraits of six people: the acceptance set, named here so the result can be quoted.
ACCEPTANCE_PHOTOS = (
    "deepface__img10.jpg", "deepface__img16.jpg", "deepface__img25.jpg", "face_recognition__biden.jpg",
    "openface__clapton-1.jpg", "facenet-pytorch__paul_rudd_1.jpg",
)


@pytest.fixture(scope="module")
def photos(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The acceptance photos, linked (not copied) into a folder of their own."""
    folder = tmp_path_factory.mktemp("hr")
    for name in ACCEPTANCE_PHOTOS:
        (folder / name).symlink_to(shared_data / "faces_hq" / name)
    return folder


@pytest.fixture(scope="module")
def saved_set(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The real model and bicubic on the six faces, paper protocol, HR 128 → LR 32; the set saved."""
    out = tmp_path_factory.mktemp("eval")
    result = runner.invoke(app, [
        "evaluate", "--hr-dir", str(photos), "--out", str(out / "report"), "--model", "realesrgan-x4plus",
        "--hr-size", "128", "--save-lr", str(out / "set"), "--sheet-faces", "3",
    ])
    assert result.exit_code == 0, result.output
    print(result.output)  # the table, for the record (pytest -s)
    return out, json.loads((out / "report" / "evaluation.json").read_text())


def _means(document: dict) -> dict[str, dict[str, float]]:
    return {m["name"]: m["mean"] for m in document["methods"]}


def test_real_model_beats_bicubic_on_st_lpips_on_real_faces_under_the_paper_protocol(saved_set: tuple[Path, dict]) -> None:
    _, document = saved_set
    assert len(document["faces"]) == len(ACCEPTANCE_PHOTOS)
    means = _means(document)
    assert means["realesrgan-x4plus"]["st_lpips"] < means["bicubic"]["st_lpips"] - 0.1
    assert "paper" in document["protocol"] and "σ 8" in document["protocol"] and "JPEG 30" in document["protocol"]


def test_outputs_agree_and_unavailable_metrics_carry_a_reason_not_a_number(saved_set: tuple[Path, dict]) -> None:
    out, document = saved_set
    metrics = {m["key"]: m for m in document["metrics"]}
    assert not metrics["ms_ssim_y"]["available"] and "161" in metrics["ms_ssim_y"]["unavailable"]
    assert all("ms_ssim_y" not in m["mean"] for m in document["methods"])
    with open(out / "report" / "evaluation.csv", newline="") as handle:
        rows = {row["method"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"bicubic", "realesrgan-x4plus"}
    assert rows["bicubic"]["ms_ssim_y (higher is better)"] == ""
    for name, mean in _means(document).items():
        assert float(rows[name]["st_lpips (lower is better)"]) == pytest.approx(mean["st_lpips"])
        assert float(rows[name]["psnr_y (higher is better)"]) == pytest.approx(mean["psnr_y"])
    sheet = read_image(out / "report" / "sheet.png").rgb
    assert sheet.shape[0] >= 3 * 128 and sheet.shape[1] >= 4 * 128  # 3 faces × (LR, bicubic, model, HR)


def test_a_saved_set_reevaluates_to_the_same_numbers(saved_set: tuple[Path, dict], tmp_path: Path) -> None:
    out, document = saved_set
    result = runner.invoke(app, ["evaluate", "--lr-dir", str(out / "set"), "--out", str(tmp_path), "--no-identity", "--sheet-faces", "0"])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "evaluation.json").read_text())
    assert again["faces"] == document["faces"]
    assert _means(again)["bicubic"]["psnr_y"] == _means(document)["bicubic"]["psnr_y"]
    assert _means(again)["bicubic"]["nlpd"] == _means(document)["bicubic"]["nlpd"]
    assert not (tmp_path / "sheet.png").exists()


def test_each_face_is_degraded_by_its_own_seed_whatever_else_is_in_the_set(astronaut: np.ndarray) -> None:
    faces = [astronaut[:256, :256], astronaut[256:, 256:], astronaut[100:356, 100:356]]
    protocol = make_protocol("paper", None, seed=7)
    full = make_pairs(faces, ["a.png", "b.png", "c.png"], protocol, hr_size=128)
    again = make_pairs(faces, ["a.png", "b.png", "c.png"], protocol, hr_size=128)
    other_seed = make_pairs(faces, ["a.png", "b.png", "c.png"], make_protocol("paper", None, seed=8), hr_size=128)
    assert all(np.array_equal(x.lr, y.lr) for x, y in zip(full, again))
    assert not np.array_equal(full[0].lr, other_seed[0].lr)
    assert full[0].hr.shape == (128, 128, 3) and full[0].lr.shape == (32, 32, 3)


def test_pool_protocol_is_the_pools_own_degradation(astronaut: np.ndarray, tmp_path: Path) -> None:
    pool = DegradationPool(kernels=gaussian_kernels([(1.2, 2.0), (2.2, 1.1)]), noise_patches=gaussian_noise(5.0, 4), jpeg_quality=40.0)
    pool.save(tmp_path / "site.pool.npz")
    protocol = make_protocol("pool", tmp_path / "site.pool.npz", seed=3)
    pairs = make_pairs([astronaut[:200, :200], astronaut[200:400, 200:400]], ["x.png", "y.png"], protocol, hr_size=0)
    for index, pair in enumerate(pairs):
        assert np.array_equal(pair.lr, pool.degrade(pair.hr, np.random.default_rng([3, index])).lr)
    save_pairs(tmp_path / "set", pairs, protocol, 0)
    loaded, described = load_pairs(tmp_path / "set")
    assert [p.name for p in loaded] == ["x-1", "y-1"] and "pool" in described
    assert all(np.array_equal(a.lr, b.lr) and np.array_equal(a.hr, b.hr) for a, b in zip(pairs, loaded))


def test_sheet_label_shows_the_whole_model_name_on_a_128_px_face(astronaut: np.ndarray) -> None:
    """Names differing only in their last letter make different sheets: a label cut at 16
    characters drew realesrgan-x4plus as realesrgan-x4plu."""
    import cv2

    hr = np.ascontiguousarray(astronaut[:128, 128:256])
    lr = cv2.resize(hr, (32, 32), interpolation=cv2.INTER_AREA)

    def drawn(name: str) -> np.ndarray:
        result = MethodResult(Method(name, lambda faces: faces), [hr], 0.0)
        return sheet(Evaluation([EvalPair("face", hr, lr)], [], [result], "test"), 1)

    assert not np.array_equal(drawn("realesrgan-x4plus"), drawn("realesrgan-x4plu"))


@pytest.mark.parametrize("width", [64, 128, 256])
def test_label_lines_keep_every_character_and_each_line_inks_inside_the_tile(width: int) -> None:
    import cv2

    name = "realesrgan-x4plus@fidelity=0.25"
    lines = label_lines(name, width)
    assert "".join(lines) == name
    for line in lines:
        bar = np.zeros((22, width + 200, 3), np.uint8)  # room to spill over, so that a spill shows
        cv2.putText(bar, line, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        assert np.flatnonzero(bar.any(axis=(0, 2))).max() < width, (line, width)
    assert label_lines("realesrgan-x4plus", 256) == ["realesrgan-x4plus"]


def test_evaluate_without_model_says_only_bicubic_is_measured_and_how_to_add_one(astronaut: np.ndarray, tmp_path: Path) -> None:
    pairs = make_pairs([astronaut[:256, 128:384]], ["face.png"], make_protocol("paper", None, seed=0), hr_size=64)
    save_pairs(tmp_path / "set", pairs, make_protocol("paper", None, seed=0), 64)
    args = ["evaluate", "--lr-dir", str(tmp_path / "set"), "--no-identity", "--sheet-faces", "0"]
    alone = runner.invoke(app, [*args, "--out", str(tmp_path / "alone")])
    assert alone.exit_code == 0, alone.output
    assert "only bicubic is measured" in alone.stderr and "--model realesrgan-x4plus" in alone.stderr
    weights = tiny_weights()
    tiny = save_model_dir(tmp_path / "tiny", weights.config, weights.state_dict)
    with_model = runner.invoke(app, [*args, "--out", str(tmp_path / "with"), "--model", str(tiny)])
    assert with_model.exit_code == 0, with_model.output
    assert "only bicubic" not in with_model.stderr


@pytest.fixture(scope="module")
def model_dir(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model directory with a pixel/GAN pair, made by finetune itself."""
    root = tmp_path_factory.mktemp("site")
    pool = DegradationPool(kernels=gaussian_kernels([(1.6, 1.6)]), noise_patches=gaussian_noise(4.0, 4), jpeg_quality=50.0)
    pool.save(root / "site.pool.npz")
    options = FinetuneOptions(
        pool=root / "site.pool.npz", hr_dir=photos, out=root / "model", init="none", arch="1,8,4", stage="both",
        iters=2, batch_size=2, lr_patch=16, seed=0, perceptual="stlpips", val_fraction=0.3,
        val_every=1000, save_every=1000, workers=0, detect_faces=False,
    )
    return run(options).model_dir


def test_evaluate_runs_on_a_finetuned_model_directory_with_and_without_fidelity(
    saved_set: tuple[Path, dict], model_dir: Path, tmp_path: Path
) -> None:
    lr_dir = saved_set[0] / "set"
    plain = runner.invoke(app, ["evaluate", "--lr-dir", str(lr_dir), "--out", str(tmp_path / "a"), "--model", str(model_dir), "--no-identity", "--max-faces", "2"])
    assert plain.exit_code == 0, plain.output
    mixed = runner.invoke(app, [
        "evaluate", "--lr-dir", str(lr_dir), "--out", str(tmp_path / "b"), "--model", str(model_dir), "--fidelity", "0", "--fidelity", "1",
        "--no-identity", "--max-faces", "2",
    ])
    assert mixed.exit_code == 0, mixed.output
    a = _means(json.loads((tmp_path / "a" / "evaluation.json").read_text()))
    b = _means(json.loads((tmp_path / "b" / "evaluation.json").read_text()))
    (plain_name,) = set(a) - {"bicubic"}
    assert set(b) == {"bicubic", f"{plain_name}@fidelity=0", f"{plain_name}@fidelity=1"}
    assert b[f"{plain_name}@fidelity=0"] == a[plain_name]  # α = 0 is the GAN model, the directory's default
    assert b[f"{plain_name}@fidelity=1"]["psnr_rgb"] != a[plain_name]["psnr_rgb"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "o"], "either --hr-dir"),
        (["--hr-dir", ".", "--lr-dir", ".", "--out", "o"], "either --hr-dir"),
        (["--hr-dir", ".", "--protocol", "pool", "--out", "o"], "needs --pool"),
        (["--hr-dir", ".", "--protocol", "ffhq", "--out", "o"], "unknown --protocol"),
        (["--hr-dir", ".", "--hr-size", "130", "--out", "o"], "multiple of 4"),
        (["--lr-dir", ".", "--out", "o"], "not an evaluation set"),
        (["--hr-dir", ".", "--fidelity", "0.5", "--model", "realesrgan-x4plus", "--out", "o", "--no-detect-faces", "--max-faces", "1"], "pixel/GAN pair"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, astronaut: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    monkeypatch.chdir(tmp_path)
    cv2.imwrite(str(tmp_path / "face.png"), cv2.cvtColor(astronaut[:256, 128:384], cv2.COLOR_RGB2BGR))
    result = runner.invoke(app, ["evaluate", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o" / "evaluation.json").exists()


def test_no_reference_reports_labelled_statistics_and_identity_consistency_per_track(
    astronaut: np.ndarray, tmp_path: Path
) -> None:
    """An enhance-shaped folder of one track: three shifted views of a real face, LR | bicubic | SR
    (an unsharp-masked bicubic stands in for SR: the statistics and the track logic are under test)."""
    import cv2

    from cctvsr.images import write_png

    folder = tmp_path / "enhanced" / "clip-0000abcd" / "track_0001"
    for frame, shift in enumerate((0, 4, 8)):
        hr = np.ascontiguousarray(astronaut[20 + shift : 236 + shift, 120:336])
        lr = cv2.resize(hr, (54, 54), interpolation=cv2.INTER_AREA)
        write_png(folder / f"{frame:06d}_lr.png", lr)
        bicubic = cv2.resize(lr, (216, 216), interpolation=cv2.INTER_CUBIC)
        write_png(folder / f"{frame:06d}_bicubic.png", bicubic)
        write_png(folder / f"{frame:06d}_sr.png", cv2.addWeighted(bicubic, 1.8, cv2.GaussianBlur(bicubic, (0, 0), 2.0), -0.8, 0))
    result = runner.invoke(app, ["evaluate", "--no-reference", str(tmp_path / "enhanced"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "not quality scores" in result.output
    document = json.loads((tmp_path / "out" / "no_reference.json").read_text())
    assert document["faces"] == 3 and document["tracks"] == 1
    stats = document["statistics"]
    assert set(stats) == {"sharpness (Laplacian variance)", "blockiness (8-px grid)", "noise σ (estimate_sigma)"}
    assert stats["sharpness (Laplacian variance)"]["lr"] > stats["sharpness (Laplacian variance)"]["bicubic"]
    (track,) = document["identity_consistency"]
    assert track["faces"] == 3 and track["track"] == "clip-0000abcd/track_0001"
    assert 0 < track["bicubic"] < 0.6  # the same person in every view
    assert 0 < track["sr"] < 0.6
    assert stats["sharpness (Laplacian variance)"]["sr"] > stats["sharpness (Laplacian variance)"]["bicubic"]


def test_no_reference_refuses_a_folder_without_enhance_output(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--no-reference", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no enhance output" in result.output
