"""Faults a careful user or the machine can cause, each driven through the real CLI.

Every case asserts what the reliability promise says: the exit code, no traceback, a one-line
`error:`, every input byte-identical afterwards (sha256), no torn manifest line, and every file a
manifest lists present with its sha256.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from cctvsr.cli import app
from cctvsr.degrade.pool import DegradationPool
from cctvsr.errors import InputError, OutputError
from cctvsr.evidence import keep_apart
from cctvsr.fsutil import atomic_path
from cctvsr.images import read_image
from cctvsr.output.manifest import ManifestWriter, read_manifest
from cctvsr.sr.weights import save_model_dir
from samples.make_demo_clip import make_demo_clip
from tests.conftest import tiny_weights
from tests.test_degrade_pool import gaussian_kernels, gaussian_noise

runner = CliRunner()
FAST = ["--every", "6", "--best", "1", "--min-track-len", "2"]  # 8 of the 48 demo frames detected


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(*paths: Path) -> dict[Path, str]:
    files = [p for root in paths for p in ([root] if root.is_file() else sorted(root.rglob("*"))) if p.is_file()]
    return {p: _sha(p) for p in files}


def _one_line_error(result: Result, code: int, needle: str) -> str:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == code, result.output
    assert len(errors) == 1 and needle in errors[0], result.stderr
    return errors[0]


def _verified_manifest(folder: Path) -> list[dict]:
    data = (folder / "manifest.jsonl").read_bytes()
    assert data == b"" or data.endswith(b"\n"), "torn manifest line"
    records = read_manifest(folder / "manifest.jsonl")
    for record in records:
        for output in record["outputs"].values():
            assert _sha(folder / output["path"]) == output["sha256"]
    return records


def _huge_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid PNG signature and IHDR claiming absurd dimensions, with one tiny IDAT."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evidence")
    clip = make_demo_clip(root / "in" / "clip.mp4")
    weights = tiny_weights()
    model = save_model_dir(root / "tiny-model", weights.config, weights.state_dict)
    faces = root / "faces"
    faces.mkdir()
    cv2.imwrite(str(faces / "astronaut.png"), cv2.cvtColor(astronaut[40:168, 150:278], cv2.COLOR_RGB2BGR))
    return {"root": root, "clip": clip, "model": model, "faces": faces}


@pytest.fixture(scope="module")
def finished_run(lab: dict[str, Path]) -> Path:
    out = lab["root"] / "finished"
    result = runner.invoke(app, ["enhance", str(lab["clip"]), "--out", str(out), "--model", str(lab["model"]), *FAST])
    assert result.exit_code == 0, result.output
    (folder,) = out.iterdir()
    assert len(_verified_manifest(folder)) >= 3
    return out


def _copy_run(finished_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    (folder,) = out.iterdir()
    return out, folder


def _enhance(lab: dict[str, Path], source: Path | str, out: Path, *extra: str) -> Result:
    return runner.invoke(app, ["enhance", str(source), "--out", str(out), "--model", str(lab["model"]), *FAST, *extra])


# --- 1. inputs are read-only to the tool -------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["annotate-is-input", "annotate-symlink-to-input", "out-inside-input-folder", "out-contains-input", "out-is-input"],
)
def test_enhance_never_writes_on_in_or_around_its_input(lab: dict[str, Path], tmp_path: Path, case: str) -> None:
    before = _hashes(lab["clip"].parent)
    clip, folder = lab["clip"], lab["clip"].parent
    args: list[str] = []
    if case == "annotate-is-input":
        source, out, args, needle = clip, tmp_path / "o", ["--annotate", str(clip)], "is the input"
    elif case == "annotate-symlink-to-input":
        link = tmp_path / "link.mp4"
        link.symlink_to(clip)
        source, out, args, needle = clip, tmp_path / "o", ["--annotate", str(link)], "is the input"
    elif case == "out-inside-input-folder":
        source, out, needle = folder, folder / "out", "inside the input folder"
    elif case == "out-contains-input":
        source, out, args, needle = clip, folder.parent, ["--resume"], "contains the input"
    else:
        source, out, needle = clip, clip, "exists and is not a folder"
    result = _enhance(lab, source, out, *args)
    _one_line_error(result, 2, needle)
    assert _hashes(lab["clip"].parent) == before
    assert not (folder / "out").exists()


def test_writing_beside_an_input_is_allowed(tmp_path: Path) -> None:
    clip = tmp_path / "demo" / "clip.mp4"
    clip.parent.mkdir()
    clip.write_bytes(b"x")
    keep_apart([("--out", tmp_path / "demo" / "out"), ("--annotate", tmp_path / "demo" / "boxes.mp4")], [clip])


@pytest.mark.parametrize("command", ["export-onnx", "upscale", "calibrate", "finetune", "evaluate"])
def test_every_command_refuses_an_output_on_or_inside_its_input(lab: dict[str, Path], tmp_path: Path, command: str) -> None:
    weights = lab["model"] / "model.safetensors"
    before = _hashes(lab["model"], lab["faces"], lab["clip"].parent)
    args = {
        "export-onnx": ["export-onnx", "--model", str(weights), "--out", str(weights)],
        "upscale": ["upscale", str(lab["faces"]), "--out", str(lab["faces"] / "sr")],
        "calibrate": ["calibrate", "--camera-dir", str(lab["clip"].parent), "--out", str(lab["clip"].parent / "site.pool.npz")],
        "finetune": ["finetune", "--pool", str(weights), "--hr-dir", str(lab["faces"]), "--out", str(lab["faces"])],
        "evaluate": ["evaluate", "--hr-dir", str(lab["faces"]), "--out", str(lab["faces"] / "eval")],
    }[command]
    result = runner.invoke(app, args)
    _one_line_error(result, 2, "--out")
    assert _hashes(lab["model"], lab["faces"], lab["clip"].parent) == before


# --- 2. no traceback from anything a user or the machine can cause ----------------------------


def test_image_claiming_huge_dimensions_is_refused_from_its_header(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="over the 100 MP limit"):
        read_image(_huge_png(tmp_path / "bomb.png"))


def test_upscale_folder_with_a_bomb_writes_the_good_images_and_names_the_bad(lab: dict[str, Path], tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    shutil.copytree(lab["faces"], inputs)
    _huge_png(inputs / "bomb.png")
    before = _hashes(inputs)
    result = runner.invoke(app, ["upscale", str(inputs), "--out", str(tmp_path / "sr"), "--model", str(lab["model"])])
    _one_line_error(result, 1, "1 of 2 images failed")
    assert "bomb.png" in result.stderr and "100 MP" in result.stderr
    assert read_image(tmp_path / "sr" / "astronaut.png").rgb.shape == (512, 512, 3)
    assert _hashes(inputs) == before


@pytest.mark.parametrize("command", ["enhance", "calibrate", "evaluate"])
def test_bomb_as_the_only_input_is_one_line(lab: dict[str, Path], tmp_path: Path, command: str) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    bomb = _huge_png(inputs / "bomb.png")
    args = {
        "enhance": ["enhance", str(bomb), "--out", str(tmp_path / "o"), "--model", str(lab["model"])],
        "calibrate": ["calibrate", "--camera-dir", str(inputs), "--out", str(tmp_path / "site.pool.npz"), "--kernels", "1"],
        "evaluate": ["evaluate", "--hr-dir", str(inputs), "--out", str(tmp_path / "eval"), "--no-detect-faces", "--no-identity"],
    }[command]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert _sha(bomb) == _hashes(inputs)[bomb]
    assert not (tmp_path / "site.pool.npz").exists()


def test_fifo_input_is_refused_instead_of_hanging(lab: dict[str, Path], tmp_path: Path) -> None:
    fifo = tmp_path / "camera.mp4"
    os.mkfifo(fifo)
    _one_line_error(_enhance(lab, fifo, tmp_path / "o"), 2, "is a FIFO")
    result = runner.invoke(app, ["upscale", str(fifo), "--out", str(tmp_path / "sr"), "--model", str(lab["model"])])
    _one_line_error(result, 2, "is a FIFO")


def test_out_under_a_file_is_one_line_exit_3(lab: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _one_line_error(_enhance(lab, lab["clip"], blocker / "o"), 3, "a part of the path is a file")
    result = runner.invoke(app, ["export-onnx", "--model", str(lab["model"]), "--out", str(blocker / "m.onnx")])
    _one_line_error(result, 3, "a part of the path is a file")


def test_evaluate_refuses_an_unwritable_out_before_any_work(lab: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["evaluate", "--hr-dir", str(lab["faces"]), "--out", str(blocker / "eval"), "--model", str(lab["model"])])
    _one_line_error(result, 3, "cannot write there")
    assert "super-resolving" not in result.stderr


@pytest.fixture
def small_mount(tmp_path: Path):
    """A tmpfs of its own, so full and read-only disks are real; skipped where mounting is refused."""
    point = tmp_path / "mnt"
    point.mkdir()

    def mount(options: str) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        return point

    yield mount
    subprocess.run(["umount", str(point)], capture_output=True)


def test_read_only_out_is_one_line_exit_3(lab: dict[str, Path], small_mount) -> None:
    point = small_mount("size=1m,ro")
    _one_line_error(_enhance(lab, lab["clip"], point / "o"), 3, "read-only file system")


def test_full_disk_is_one_line_exit_3_and_leaves_no_torn_line(lab: dict[str, Path], small_mount) -> None:
    point = small_mount("size=96k")
    result = _enhance(lab, lab["clip"], point / "o", "--all-frames")
    _one_line_error(result, 3, "disk full")
    for folder in (point / "o").iterdir():
        _verified_manifest(folder)
        assert not list(folder.rglob("*.tmp"))


@pytest.mark.parametrize("fault", ["short-write", "enospc"])
def test_manifest_line_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    path = tmp_path / "manifest.jsonl"
    with ManifestWriter(path) as manifest:
        manifest.append({"n": 1})
        real_write = os.write

        def failing(fd: int, data: bytes) -> int:
            if fault == "short-write":
                return real_write(fd, data[: len(data) // 2]) if len(data) > 20 else 0
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", failing)
        with pytest.raises(OutputError, match="disk full"):
            manifest.append({"n": 2, "padding": "x" * 100})
        monkeypatch.setattr(os, "write", real_write)
        manifest.append({"n": 3})
    assert [r["n"] for r in read_manifest(path)] == [1, 3]


def test_atomic_write_that_fails_leaves_neither_file_nor_temp(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        with atomic_path(tmp_path / "a.png") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_calibrate_on_tiny_frames_is_one_line(tmp_path: Path) -> None:
    footage = tmp_path / "footage"
    footage.mkdir()
    for i in range(3):
        cv2.imwrite(str(footage / f"f{i}.png"), np.full((20, 20, 3), 60 * i, np.uint8))
    result = runner.invoke(app, ["calibrate", "--camera-dir", str(footage), "--out", str(tmp_path / "site.pool.npz")])
    _one_line_error(result, 2, "too small to calibrate")


def test_pickled_weights_are_refused_with_a_message_that_is_not_advice(tmp_path: Path) -> None:
    bad = tmp_path / "evil.pth"
    torch.save({"params": argparse.Namespace(payload="runs on unpickling in a real attack")}, bad)
    result = runner.invoke(app, ["upscale", "--demo", "--out", str(tmp_path / "o"), "--model", str(bad)])
    line = _one_line_error(result, 2, "never unpickles")
    assert "weights_only" not in line and "Re-running" not in line


@pytest.mark.parametrize("damage", ["truncated", "empty", "not-weights"])
def test_damaged_weights_file_is_one_line(lab: dict[str, Path], tmp_path: Path, damage: str) -> None:
    data = (lab["model"] / "model.safetensors").read_bytes()
    bad = tmp_path / "w.safetensors"
    bad.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "not-weights": b"hello" * 100}[damage])
    result = runner.invoke(app, ["upscale", "--demo", "--out", str(tmp_path / "o"), "--model", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert str(bad) in result.stderr


# --- 3 and 4. durability and a resume that verifies ---------------------------------------------


def test_resume_refuses_a_deleted_output_and_names_it(finished_run: Path, tmp_path: Path, lab: dict[str, Path]) -> None:
    out, folder = _copy_run(finished_run, tmp_path)
    victim = sorted(folder.rglob("*_bicubic.png"))[0]
    victim.unlink()
    line = _one_line_error(_enhance(lab, lab["clip"], out, "--resume"), 2, "1 of")
    assert f"{victim.relative_to(folder)} missing" in line


def test_resume_refuses_a_changed_output_and_names_it(finished_run: Path, tmp_path: Path, lab: dict[str, Path]) -> None:
    out, folder = _copy_run(finished_run, tmp_path)
    victim = sorted(folder.rglob("*_lr.png"))[0]
    data = bytearray(victim.read_bytes())
    data[-20] ^= 0xFF
    victim.write_bytes(bytes(data))
    line = _one_line_error(_enhance(lab, lab["clip"], out, "--resume"), 2, "changed")
    assert str(victim.relative_to(folder)) in line


def test_finished_run_is_left_alone_without_decoding(finished_run: Path, tmp_path: Path, lab: dict[str, Path]) -> None:
    out, folder = _copy_run(finished_run, tmp_path)
    stale = folder / "track_0001" / ".000001_sr.png.abc123.tmp"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"left by a kill")
    before = _hashes(folder)
    result = _enhance(lab, lab["clip"], out, "--resume")
    assert result.exit_code == 0, result.output
    assert "already finished" in result.output and "frames" not in result.stderr
    assert not stale.exists()
    before.pop(stale)
    assert _hashes(folder) == before


def test_damaged_run_file_is_one_line_on_resume(finished_run: Path, tmp_path: Path, lab: dict[str, Path]) -> None:
    out, folder = _copy_run(finished_run, tmp_path)
    (folder / "run.json").write_text("{not json")
    _one_line_error(_enhance(lab, lab["clip"], out, "--resume"), 2, "unreadable or damaged")


def test_failed_start_leaves_a_folder_a_plain_retry_accepts(
    lab: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cctvsr.video

    def refuse(source):  # the decoder fails to open after the output folder was prepared
        raise InputError(f"{source.label}: cannot open video (injected)")

    out = tmp_path / "o"
    with monkeypatch.context() as patch:
        patch.setattr(cctvsr.video, "_open", refuse)
        _one_line_error(_enhance(lab, lab["clip"], out), 2, "cannot open video")
    assert list(out.iterdir()) == []
    retry = _enhance(lab, lab["clip"], out)
    assert retry.exit_code == 0, retry.output
    (folder,) = out.iterdir()
    assert _verified_manifest(folder)


def test_folder_run_processes_good_inputs_and_lists_the_bad(lab: dict[str, Path], tmp_path: Path, astronaut: np.ndarray) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "a_good.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    _huge_png(inputs / "b_bomb.png")
    cv2.imwrite(str(inputs / "c_good.png"), cv2.cvtColor(astronaut[::2, ::2], cv2.COLOR_RGB2BGR))
    before = _hashes(inputs)
    out = tmp_path / "o"
    result = runner.invoke(app, ["enhance", str(inputs), "--out", str(out), "--model", str(lab["model"])])
    _one_line_error(result, 1, "1 of 3 inputs failed")
    written = sorted(p.name.split("-")[0] for p in out.iterdir() if p.is_dir())
    assert written == ["a_good", "c_good"]
    failed = json.loads((out / "failed.json").read_text())["failed"]
    assert len(failed) == 1 and "b_bomb.png" in failed[0]["input"]
    assert _hashes(inputs) == before


def test_enhance_output_folders_are_never_read_back_as_inputs(finished_run: Path, tmp_path: Path, lab: dict[str, Path]) -> None:
    footage = tmp_path / "footage"
    footage.mkdir()
    shutil.copy(lab["clip"], footage / "clip.mp4")
    shutil.copytree(finished_run, footage / "earlier-run")
    from cctvsr.video import list_sources

    skipped: list[str] = []
    assert [s.label for s in list_sources(str(footage), skipped=skipped)] == [str(footage / "clip.mp4")]
    assert any("cctvsr output folder" in note for note in skipped)


# --- kills: a real process killed mid-run, then --resume ----------------------------------------


def test_enhance_killed_mid_run_resumes_to_a_verified_manifest(lab: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o"
    command = [sys.executable, "-m", "cctvsr", "enhance", str(lab["clip"]), "--out", str(out), "--model", str(lab["model"]), *FAST, "--all-frames"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = 120.0
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        manifests = list(out.glob("*/manifest.jsonl"))
        if manifests and manifests[0].stat().st_size > 2000:
            break
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait()
    result = _enhance(lab, lab["clip"], out, "--all-frames", "--resume")
    assert result.exit_code == 0, result.output
    (folder,) = out.iterdir()
    records = _verified_manifest(folder)
    keys = [(r["track_id"], r.get("frame_index", "fusion")) for r in records]  # a fusion line per fused track
    assert len(keys) == len(set(keys)) and keys
    assert not list(folder.rglob("*.tmp"))


# --- the other resumable commands share the same verification -----------------------------------


def _kernel() -> "KernelEstimate":
    from cctvsr.degrade.kernels import KernelEstimate

    k = np.zeros((13, 13), np.float32)
    k[6, 6] = 1.0
    return KernelEstimate(k2=k, k4=k, iterations=5, stopped_early=False, seconds=0.1)


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_calibrate_resume_refuses_a_kernel_checkpoint_changed_after_it_was_written(tmp_path: Path, damage: str) -> None:
    from cctvsr.jobs.calibrate import KernelCheckpoint

    identity = {"sources": [], "options": {"kernels": 2}}
    first = KernelCheckpoint(tmp_path / "site.pool.npz", identity, resume=False)
    first.save(0, _kernel())
    first.save(1, _kernel())
    again = KernelCheckpoint(tmp_path / "site.pool.npz", identity, resume=True)
    assert again.load(0) is not None and again.load(1) is not None
    victim = first.folder / "kernel_001.npz"
    if damage == "changed":
        data = bytearray(victim.read_bytes())
        data[-30] ^= 0x01
        victim.write_bytes(bytes(data))
    else:
        victim.unlink()
    with pytest.raises(InputError, match=f"kernel_001.npz {damage}"):
        KernelCheckpoint(tmp_path / "site.pool.npz", identity, resume=True)


def test_kernel_written_but_never_listed_is_estimated_again(tmp_path: Path) -> None:
    from cctvsr.jobs.calibrate import KernelCheckpoint

    first = KernelCheckpoint(tmp_path / "site.pool.npz", {"a": 1}, resume=False)
    first.save(0, _kernel())
    (first.folder / "kernels.jsonl").write_bytes(b"")  # a kill between the rename and the ledger line
    assert KernelCheckpoint(tmp_path / "site.pool.npz", {"a": 1}, resume=True).load(0) is None


def test_calibrate_checkpoint_records_its_schema_and_resumes_one_written_before_schemas(tmp_path: Path) -> None:
    """state.json carries "schema"; a folder an earlier version left without it (the same format,
    schema 1) still resumes with its finished kernels."""
    import json

    from cctvsr.jobs.calibrate import SCHEMA, KernelCheckpoint

    identity = {"sources": [], "options": {"kernels": 1}}
    first = KernelCheckpoint(tmp_path / "site.pool.npz", identity, resume=False)
    first.save(0, _kernel())
    state = first.folder / "state.json"
    assert json.loads(state.read_text()) == {**identity, "schema": SCHEMA} and SCHEMA == 1
    state.write_text(json.dumps(identity))  # as written before the schema field existed
    assert KernelCheckpoint(tmp_path / "site.pool.npz", identity, resume=True).load(0) is not None


def test_calibrate_checkpoint_of_another_schema_is_refused(tmp_path: Path) -> None:
    import json

    from cctvsr.jobs.calibrate import KernelCheckpoint

    identity = {"sources": [], "options": {"kernels": 1}}
    first = KernelCheckpoint(tmp_path / "site.pool.npz", identity, resume=False)
    state = first.folder / "state.json"
    state.write_text(json.dumps({**identity, "schema": 2}))
    with pytest.raises(InputError, match=r"state.json: written by a different cctvsr run format \(schema 2, this version reads 1\)"):
        KernelCheckpoint(tmp_path / "site.pool.npz", identity, resume=True)


@pytest.mark.parametrize("content", ["{torn", "[1, 2]", ""])
def test_finetune_resume_with_a_damaged_run_file_is_one_line(tmp_path: Path, content: str) -> None:
    from cctvsr.jobs.finetune import _record_run

    train = tmp_path / "model" / "train"
    train.mkdir(parents=True)
    (train / "run.json").write_text(content)
    with pytest.raises(InputError, match="cannot resume from this folder"):
        _record_run(train, {"pool_sha256": "0"}, resume=True)


@pytest.mark.parametrize("damage", ["garbage", "truncated-zip", "fifo"])
def test_damaged_pool_is_one_line(tmp_path: Path, damage: str) -> None:
    pool = tmp_path / "site.pool.npz"
    if damage == "garbage":
        pool.write_bytes(b"not a pool" * 50)
    elif damage == "truncated-zip":
        buffer = tmp_path / "real.npz"
        np.savez(buffer, kernels=np.ones((2, 13, 13), np.float32))
        pool.write_bytes(buffer.read_bytes()[:200])
    else:
        os.mkfifo(pool)
    result = runner.invoke(app, ["calibrate", "--show", str(pool)])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("error:") and "site.pool.npz" in line]


def test_truncated_gif_is_processed_with_a_warning(lab: dict[str, Path], tmp_path: Path, shared_data: Path) -> None:
    whole = shared_data / "video" / "intel-sample-videos__face-demographics-walking-and-pause.gif"
    cut = tmp_path / "in" / "cut.gif"
    cut.parent.mkdir()
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    before = _sha(cut)
    result = _enhance(lab, cut, tmp_path / "o")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "without the GIF trailer (file truncated" in result.stderr
    assert _sha(cut) == before


def _kill_when(command: list[str], ready, deadline: float = 120.0) -> None:
    """Start `command`, SIGKILL it as soon as `ready()` holds (or it ends by itself)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    while time.monotonic() - start < deadline and process.poll() is None and not ready():
        time.sleep(0.05)
    process.kill()
    process.wait()


def test_calibrate_killed_after_a_kernel_resumes_with_it(astronaut: np.ndarray, tmp_path: Path) -> None:
    footage = tmp_path / "footage"
    footage.mkdir()
    for index in range(3):
        cv2.imwrite(str(footage / f"f{index}.png"), cv2.cvtColor(np.roll(astronaut, 40 * index, axis=1)[::2, ::2], cv2.COLOR_RGB2BGR))
    hashes = {path: _sha(path) for path in footage.iterdir()}
    out = tmp_path / "site.pool.npz"
    args = ["calibrate", "--camera-dir", str(footage), "--out", str(out), "--kernels", "3", "--kernel-iters", "100", "--max-frames", "6", "--jobs", "1"]
    ledger = tmp_path / "site.pool.npz.partial" / "kernels.jsonl"
    _kill_when([sys.executable, "-m", "cctvsr", *args], lambda: ledger.exists() and ledger.stat().st_size > 0)
    assert not out.exists(), "the kill came too late to test a resume"
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert "of 3 kernels reused" in result.stderr and "0 of 3 kernels reused" not in result.stderr
    assert len(DegradationPool.load(out).kernels) == 3
    assert {path: _sha(path) for path in footage.iterdir()} == hashes
    assert not list(tmp_path.rglob("*.tmp"))


def test_finetune_killed_after_a_checkpoint_resumes_to_the_end(tmp_path: Path, shared_data: Path) -> None:
    from cctvsr.train.trainer import checkpoints

    faces = tmp_path / "faces"
    faces.mkdir()
    for name in ("deepface__img10.jpg", "deepface__img16.jpg", "deepface__img25.jpg"):
        bgr = cv2.imread(str(shared_data / "faces_hq" / name))
        cv2.imwrite(str(faces / name.replace(".jpg", ".png")), cv2.resize(bgr, (160, 160), interpolation=cv2.INTER_AREA))
    pool = tmp_path / "site.pool.npz"
    DegradationPool(kernels=gaussian_kernels([(1.4, 1.4)]), noise_patches=gaussian_noise(5.0, 2), jpeg_quality=45.0).save(pool)
    hashes = {path: _sha(path) for path in [pool, *faces.iterdir()]}
    out = tmp_path / "model"
    args = ["finetune", "--pool", str(pool), "--hr-dir", str(faces), "--out", str(out), "--init", "none", "--arch", "1,8,8",
            "--no-detect-faces", "--workers", "0", "--stage", "pixel", "--iters", "40", "--save-every", "5", "--val-every", "40",
            "--batch-size", "2", "--lr-patch", "16", "--precision", "fp32"]
    _kill_when([sys.executable, "-m", "cctvsr", *args], lambda: len(checkpoints(out / "train" / "pixel")) >= 1)
    done = checkpoints(out / "train" / "pixel")
    assert done and not (out / "model.safetensors").exists(), "the kill came too late to test a resume"
    result = runner.invoke(app, [*args, "--resume"])
    assert result.exit_code == 0, result.output
    assert checkpoints(out / "train" / "pixel")[-1].name == "checkpoint-00000040"
    assert any(out.glob("*.safetensors"))
    assert {path: _sha(path) for path in [pool, *faces.iterdir()]} == hashes
    assert not list(out.rglob("*.tmp"))
