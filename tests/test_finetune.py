"""`cctvsr finetune`: aligned training pairs, a trainer that learns, exact resume, the exported
model directory, and one-line refusals before any training starts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from typer.testing import CliRunner

from cctvsr.cli import app
from cctvsr.degrade.pool import DegradationPool, blur_downsample
from cctvsr.sr.rrdb import RRDBConfig, RRDBNet
from cctvsr.train.data import IterationSampler, PairDataset, load_hr_faces, to_image, to_tensor
from cctvsr.jobs.finetune import FinetuneOptions, run, stage_settings
from cctvsr.train.trainer import StageTrainer, checkpoints
from tests.test_degrade_pool import gaussian_kernels, gaussian_noise

runner = CliRunner()
PHOTOS = ("deepface__img10.jpg", "deepface__img16.jpg", "deepface__img25.jpg", "deepface__img4.jpg", "deepface__img13.jpg")
TINY_ARCH = "2,16,8"


@pytest.fixture(scope="module")
def faces_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five real portraits, shrunk to a 200 px short side so the tests stay quick."""
    folder = tmp_path_factory.mktemp("faces")
    for name in PHOTOS:
        bgr = cv2.imread(str(shared_data / "faces_hq" / name))
        scale = 200 / min(bgr.shape[:2])
        cv2.imwrite(str(folder / name.replace(".jpg", ".png")), cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    return folder


@pytest.fixture(scope="module")
def pool() -> DegradationPool:
    return DegradationPool(
        kernels=gaussian_kernels([(1.2, 2.0), (1.6, 1.6), (2.2, 1.1)]), noise_patches=gaussian_noise(5.0, 8), jpeg_quality=45.0
    )


@pytest.fixture(scope="module")
def pool_file(pool: DegradationPool, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pool") / "site.pool.npz"
    pool.save(path)
    return path


def _faces(faces_dir: Path) -> list[np.ndarray]:
    return load_hr_faces(faces_dir, detector=None).faces


def test_pairs_without_noise_or_jpeg_are_the_hr_crop_blurred_with_their_kernel_every_4th_pixel(
    faces_dir: Path, pool: DegradationPool
) -> None:
    clean = replace(pool, noise_patches=np.zeros((0, 32, 32, 3), np.float32), jpeg_prob=0.0)
    dataset = PairDataset(_faces(faces_dir), clean, lr_patch=32, batch_size=4, seed=5)
    kernels_seen = set()
    for iteration in range(3):
        for index in range(4):
            pair = dataset.pair(iteration, index)
            assert pair.hr.shape == (128, 128, 3) and pair.lr.shape == (32, 32, 3)
            expected = np.clip(np.rint(blur_downsample(pair.hr, clean.kernels[pair.kernel_index], 4)), 0, 255)
            assert np.array_equal(pair.lr, expected.astype(np.uint8))
            kernels_seen.add(pair.kernel_index)
    assert len(kernels_seen) > 1


def test_loader_workers_yield_the_same_batches_as_the_main_process(faces_dir: Path, pool: DegradationPool) -> None:
    dataset = PairDataset(_faces(faces_dir), pool, lr_patch=16, batch_size=3, seed=1)

    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(dataset, batch_size=3, sampler=IterationSampler(2, 4, 3), num_workers=workers)
        return [lr for lr, _ in loader]

    in_process, in_workers = batches(0), batches(2)
    assert len(in_process) == 2 and all(torch.equal(a, b) for a, b in zip(in_process, in_workers))
    assert torch.equal(in_process[0][1], to_tensor(dataset.pair(2, 1).lr))  # iteration 2, place 1


def test_fresh_tiny_network_overfits_one_batch_to_a_quarter_of_its_l1(faces_dir: Path, pool: DegradationPool) -> None:
    dataset = PairDataset(_faces(faces_dir), pool, lr_patch=32, batch_size=16, seed=0)
    lr, hr = (torch.stack(t) for t in zip(*(dataset[i] for i in range(16))))
    torch.manual_seed(0)
    settings = stage_settings("pixel", iters=300, learning_rate=2e-4, decay_at=(), batch_size=16)
    trainer = StageTrainer(settings, RRDBNet(RRDBConfig(2, 16, 8)), torch.device("cpu"))
    start = last = trainer.train_step(lr, hr)["l1"]
    while trainer.step < 300 and last > 0.25 * start:  # measured: 0.146× at 200 steps, 0.108× at 300
        last = trainer.train_step(lr, hr)["l1"]
    assert last <= 0.25 * start, f"L1 {start:.4f} -> {last:.4f} in {trainer.step} steps"


def test_three_full_size_gan_steps_lower_that_batchs_generator_loss(x4plus, faces_dir: Path, pool: DegradationPool) -> None:
    from cctvsr.perceptual.stlpips import StLpips

    dataset = PairDataset(_faces(faces_dir), pool, lr_patch=32, batch_size=2, seed=0)
    lr, hr = (torch.stack(t) for t in zip(dataset[0], dataset[1]))
    settings = stage_settings("gan", iters=3, batch_size=2)
    trainer = StageTrainer(settings, x4plus.build(), torch.device("cpu"), StLpips.from_packaged())
    start = {k: v.clone() for k, v in trainer.g.state_dict().items()}
    for _ in range(3):
        losses = trainer.train_step(lr, hr)
        assert all(np.isfinite(v) for v in losses.values()), losses
    assert trainer.skipped == 0

    def loss_with(state: dict[str, torch.Tensor]) -> float:  # both judged by the same, final D
        trainer.g.load_state_dict(state)
        with torch.no_grad():
            return float(trainer.generator_loss(lr, hr)[0])

    after = {k: v.clone() for k, v in trainer.g.state_dict().items()}
    assert loss_with(after) < loss_with(start)


def _request(pool_file: Path, faces_dir: Path, out: Path, **changes) -> FinetuneOptions:
    base = FinetuneOptions(
        pool=pool_file, hr_dir=faces_dir, out=out, init="none", arch=TINY_ARCH, stage="both", iters=4, batch_size=2, lr_patch=16,
        seed=3, perceptual="stlpips", val_fraction=0.2, val_every=1000, save_every=1, workers=0, detect_faces=False,
    )
    return replace(base, **changes)


def test_stopped_and_resumed_run_reaches_bit_identical_weights(
    pool_file: Path, faces_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = run(_request(pool_file, faces_dir, tmp_path / "straight")).model_dir

    import cctvsr.train.trainer as trainer_module

    real_step = trainer_module.StageTrainer.train_step

    def stops_in_the_gan_stage(self, lr, hr):
        if self.settings.stage == "gan" and self.step == 2:
            raise KeyboardInterrupt
        return real_step(self, lr, hr)

    monkeypatch.setattr(trainer_module.StageTrainer, "train_step", stops_in_the_gan_stage)
    with pytest.raises(KeyboardInterrupt):
        run(_request(pool_file, faces_dir, tmp_path / "resumed"))
    assert [c.name for c in checkpoints(tmp_path / "resumed" / "train" / "gan")][-1] == "checkpoint-00000002"
    assert not (tmp_path / "resumed" / "config.json").exists()
    monkeypatch.setattr(trainer_module.StageTrainer, "train_step", real_step)
    resumed = run(_request(pool_file, faces_dir, tmp_path / "resumed", resume=True)).model_dir

    for name in ("model.safetensors", "pixel.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for stage in ("pixel", "gan"):
        a = torch.load(checkpoints(straight / "train" / stage)[-1] / "state.pt", weights_only=True)
        b = torch.load(checkpoints(resumed / "train" / stage)[-1] / "state.pt", weights_only=True)
        assert a["step"] == b["step"] == 4
        if stage == "gan":
            assert all(torch.equal(a["d"][k], b["d"][k]) for k in a["d"])
    config = json.loads((resumed / "config.json").read_text())
    assert config["pixel_weights"] == "pixel.safetensors" and config["parameters"]["perceptual"] == "stlpips-alex"


def test_upscale_with_the_exported_model_is_the_trainers_own_forward_pass(
    pool_file: Path, faces_dir: Path, tmp_path: Path, astronaut_face: np.ndarray
) -> None:
    summary = run(_request(pool_file, faces_dir, tmp_path / "model", stage="gan"))
    out, outcomes = summary.model_dir, summary.outcomes
    assert outcomes[-1].best.step == 4  # validation ran only at the end, so the export is the final EMA
    settings = stage_settings("gan", iters=4, batch_size=2, lr_patch=16, seed=3)
    from cctvsr.perceptual.stlpips import StLpips

    trainer = StageTrainer(settings, RRDBNet(RRDBConfig(2, 16, 8)), torch.device("cpu"), StLpips.from_packaged())
    trainer.load(checkpoints(out / "train" / "gan")[-1])
    with torch.no_grad():
        own_unit = trainer.ema(to_tensor(astronaut_face)[None])[0]
    own = own_unit.clamp(0, 1).numpy().transpose(1, 2, 0) * 255.0

    src = tmp_path / "face.png"
    cv2.imwrite(str(src), cv2.cvtColor(astronaut_face, cv2.COLOR_RGB2BGR))
    result = runner.invoke(app, ["upscale", str(src), "--out", str(tmp_path / "up"), "--model", str(out), "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "up" / "face.png")), cv2.COLOR_BGR2RGB).astype(np.float64)
    assert np.abs(written - own).max() <= 0.5 + 1e-3  # the PNG's rounding, nothing more
    # Exact equality would be flaky: float order differs between the two paths, so a value within
    # 1e-6 of a rounding tie (8.5) may land on either side. At most a handful of pixels, by one level.
    differs = np.abs(to_image(own_unit).astype(np.int16) - written.astype(np.int16))
    assert differs.max() <= 1 and np.count_nonzero(differs) <= 1e-4 * differs.size


def _finetune_cli(pool: Path, hr_dir: Path, out: Path, *extra: str):
    """The CLI on a fresh tiny network, each photo taken whole, pairs made in this process."""
    return runner.invoke(
        app,
        ["finetune", "--pool", str(pool), "--hr-dir", str(hr_dir), "--out", str(out), "--init", "none", "--arch", TINY_ARCH,
         "--no-detect-faces", "--workers", "0", *extra],
    )


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing pool", "no such pool file"),
        ("corrupt pool", "site.pool.npz"),
        ("empty hr-dir", "too few usable faces"),
        ("too-small hr-dir", "too few usable faces"),
        ("unwritable out", "cannot write there (a part of the path is a file, not a folder)"),
    ],
)
def test_bad_input_is_one_line_before_any_training(
    case: str, needle: str, pool_file: Path, faces_dir: Path, tmp_path: Path
) -> None:
    pool, hr_dir, out = pool_file, faces_dir, tmp_path / "out"
    if case == "missing pool":
        pool = tmp_path / "nowhere.pool.npz"
    elif case == "corrupt pool":
        pool = tmp_path / "site.pool.npz"
        pool.write_bytes(pool_file.read_bytes()[:300])
    elif case == "empty hr-dir":
        hr_dir = tmp_path / "empty"
        hr_dir.mkdir()
    elif case == "too-small hr-dir":
        hr_dir = tmp_path / "small"
        hr_dir.mkdir()
        for i, path in enumerate(sorted(faces_dir.iterdir())):
            small = cv2.resize(cv2.imread(str(path)), (100, 120)) if i else cv2.imread(str(path))
            cv2.imwrite(str(hr_dir / path.name), small)
    else:
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        out = blocker / "model"
    result = _finetune_cli(pool, hr_dir, out, "--iters", "2", "--batch-size", "2")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == (3 if case == "unwritable out" else 2), result.output  # 3: an output the OS refuses
    assert lines[-1].startswith("error:") and needle in lines[-1], lines
    assert not (out / "train").exists()


def test_config_file_sets_options_and_flags_win(pool_file: Path, faces_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text('stage = "pixel"\niters = 2\nbatch_size = 2\nlr_patch = 16\nseed = 7\nlearning_rate = 3e-4\n')
    out = tmp_path / "model"
    result = _finetune_cli(pool_file, faces_dir, out, "--config", str(config), "--iters", "1")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "config.json").read_text())
    assert document["stage"] == "pixel" and "pixel_weights" not in document
    settings = document["parameters"]["pixel"]
    assert (settings["iters"], settings["seed"], settings["learning_rate"], settings["lr_patch"]) == (1, 7, 3e-4, 16)


def test_a_pool_with_only_a_measured_sigma_trains_on_that_noise_before_jpeg_and_says_so(
    pool: DegradationPool, faces_dir: Path, tmp_path: Path
) -> None:
    sensor = {"sigma": 6.0, "sigma_per_channel": [6.0, 6.0, 6.0], "upper_bound": None, "method": "codec-synthesis",
              "frames_used": 16, "codec": "h264", "textured_frames_rejected": 0}
    measured = replace(pool, noise_patches=np.zeros((0, 32, 32, 3), np.float32), noise=sensor)
    dataset = PairDataset(_faces(faces_dir), replace(measured, jpeg_prob=0.0), lr_patch=32, batch_size=4, seed=5)
    pair = dataset.pair(0, 0)
    clean = blur_downsample(pair.hr, measured.kernels[pair.kernel_index], 4)
    assert (pair.lr - clean).std() == pytest.approx(6.0, rel=0.1)  # the pool's σ reaches the training pairs
    measured.save(tmp_path / "measured.pool.npz")
    out = tmp_path / "model"
    result = _finetune_cli(tmp_path / "measured.pool.npz", faces_dir, out, "--stage", "pixel", "--iters", "1", "--batch-size", "2", "--lr-patch", "16")
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "config.json").read_text())["pool"]["noise"]
    assert recorded.startswith("Gaussian σ 6.00, 6.00, 6.00 (R, G, B) before JPEG (codec-synthesis)")
    assert "camera noise: Gaussian σ 6.00" in result.stderr


def test_unknown_config_key_is_refused_with_one_line(pool_file: Path, faces_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("learnin_rate = 1e-3\n")
    result = runner.invoke(
        app, ["finetune", "--pool", str(pool_file), "--hr-dir", str(faces_dir), "--out", str(tmp_path / "m"), "--config", str(config)]
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "unknown key(s) learnin_rate" in lines[0]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{torn", "run.json: unreadable or damaged; cannot resume from this folder (use a new --out)"),
        ('{"schema": 2, "pool_sha256": "0"}', "run.json: written by a different cctvsr run format (schema 2, this version reads 1); use a new --out"),
    ],
    ids=["damaged", "other-schema"],
)
def test_resume_from_a_damaged_or_other_format_run_file_is_one_line(
    content: str, needle: str, pool_file: Path, faces_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    (out / "train").mkdir(parents=True)
    (out / "train" / "run.json").write_text(content)
    result = _finetune_cli(pool_file, faces_dir, out, "--stage", "pixel", "--iters", "1", "--batch-size", "2", "--lr-patch", "16", "--resume")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert [line for line in lines if line.startswith("error:")] == [lines[-1]] and lines[-1].endswith(needle), lines
    assert sorted(p.name for p in (out / "train").iterdir()) == ["run.json"] and not (out / "config.json").exists()


def test_run_file_carries_its_schema_and_one_without_is_read_as_schema_1(tmp_path: Path) -> None:
    from cctvsr.errors import InputError
    from cctvsr.jobs.finetune import RUN_SCHEMA, _record_run

    train = tmp_path / "model" / "train"
    identity = {"schema": RUN_SCHEMA, "pool_sha256": "0"}
    _record_run(train, identity, resume=False)
    assert json.loads((train / "run.json").read_text()) == {"schema": 1, "pool_sha256": "0"}
    _record_run(train, identity, resume=True)
    (train / "run.json").write_text('{"pool_sha256": "0"}')  # written before run.json carried a schema: the same format
    _record_run(train, identity, resume=True)
    (train / "run.json").write_text('{"pool_sha256": "1"}')
    with pytest.raises(InputError, match=r"--resume with a different pool, faces or options \(pool_sha256\)$"):
        _record_run(train, identity, resume=True)
