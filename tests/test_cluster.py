"""`enhance --ray`: on a local Ray cluster the outputs equal one machine's, byte for byte, for whole
files and for files cut into time segments; a killed SR actor or a killed driver loses no face and
writes none twice.

One Ray instance (two CPUs) serves the module: `--ray local` joins a Ray that is already running
instead of starting its own. CI installs the `cluster` extra; elsewhere the module is skipped
without Ray, unless CCTVSR_REQUIRE_SHARED=1 says the environment must be complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from cctvsr.cli import app
from cctvsr.cluster.units import WorkUnit, frame_times, overlap_frames, plan_input
from cctvsr.sr.rrdb import RRDBConfig
from cctvsr.sr.weights import save_model_dir
from cctvsr.video import list_sources
from samples.make_demo_clip import make_demo_clip
from tests.conftest import tiny_weights

runner = CliRunner()
# --sr-max-face 0: the demo's faces are over the default SR budget, and equality of SR bytes is the point
OPTIONS = ["--best", "2", "--sr-max-face", "0", "--no-fuse"]  # fusion is one machine's work for now
SEGMENT = "0.05"  # minutes: the 16 s clip in six segments of 36 frames (3 s at 12 fps)
CUTS = (36, 72, 108, 144, 180)


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        if os.environ.get("CCTVSR_REQUIRE_SHARED") == "1":
            pytest.fail("CCTVSR_REQUIRE_SHARED=1 but Ray is not installed (pip install -e '.[test,cluster]')")
        pytest.skip("Ray is not installed (pip install -e '.[cluster]')")
    return ray


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two short demo clips (4 s and 3 s) in one folder; a 16 s one, long enough that its last
    segments decode from past the start, after the motion gate's 9.4 s warm-up; and two generators:
    the tiny one and a slower small one, so that SR calls are still queued when an actor is killed."""
    root = tmp_path_factory.mktemp("cluster")
    clips = root / "clips"
    make_demo_clip(clips / "a.mp4", seconds=4.0, seed=1)
    make_demo_clip(clips / "b.mp4", seconds=3.0, seed=2)
    make_demo_clip(root / "long.mp4", seconds=16.0, seed=3)
    for truth in clips.glob("*.json"):  # the clips' ground truth is not an input
        truth.rename(root / truth.name)
    tiny = tiny_weights()
    slow = save_model_dir(root / "small-model", RRDBConfig(num_block=4, num_feat=48, num_grow_ch=24), _random_state(4, 48, 24))
    return {"root": root, "clips": clips, "long": root / "long.mp4", "tiny": save_model_dir(root / "tiny-model", tiny.config, tiny.state_dict),
            "slow": slow}


def _random_state(blocks: int, feat: int, grow: int) -> dict:
    import torch

    from cctvsr.sr.rrdb import RRDBNet

    torch.manual_seed(5)
    return RRDBNet(RRDBConfig(num_block=blocks, num_feat=feat, num_grow_ch=grow)).state_dict()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    ray = _ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _enhance(source: Path, out: Path, model: Path, *extra: str) -> None:
    result = runner.invoke(app, ["enhance", str(source), "--out", str(out), "--model", str(model), *OPTIONS, *extra])
    assert result.exit_code == 0, result.output


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(folder: Path) -> list[dict]:
    """The manifest's records, after checking each listed file's sha256 and that no face is there twice."""
    data = (folder / "manifest.jsonl").read_bytes()
    assert data.endswith(b"\n"), "torn manifest line"
    records = [json.loads(line) for line in data.decode().splitlines()]
    for record in records:
        for output in record["outputs"].values():
            assert _sha(folder / output["path"]) == output["sha256"], output["path"]
    keys = [(r["track_id"], r["frame_index"]) for r in records]
    assert len(keys) == len(set(keys)), "a face written twice"
    return records


def _same_as_one_machine(single: Path, cluster: Path) -> int:
    """Every input folder of `cluster` equals `single`'s: the manifest line for line (faces, boxes,
    every output's sha256), tracks.json's tracks, and the files themselves. Returns the SR images compared."""
    folders = sorted(p.name for p in single.iterdir() if p.is_dir())
    assert folders and sorted(p.name for p in cluster.iterdir() if p.is_dir()) == folders
    compared = 0
    for name in folders:
        one, many = _verified(single / name), _verified(cluster / name)
        assert [(r["track_id"], r["frame_index"], r["box"]) for r in many] == [(r["track_id"], r["frame_index"], r["box"]) for r in one]
        assert many == one
        tracks = [json.loads((root / name / "tracks.json").read_text())["tracks"] for root in (single, cluster)]
        assert tracks[1] == tracks[0]
        compared += sum("sr" in r["outputs"] for r in one)
    return compared


@pytest.fixture(scope="module")
def single_runs(lab: dict[str, Path]) -> dict[str, Path]:
    """The one-machine runs the cluster's are compared with."""
    runs = {"folder": lab["root"] / "single-folder", "long": lab["root"] / "single-long"}
    _enhance(lab["clips"], runs["folder"], lab["slow"])
    _enhance(lab["long"], runs["long"], lab["slow"])
    return runs


def test_segments_cover_every_frame_once_and_overlap_by_the_tracker_buffer_and_gate_warm_up(lab: dict[str, Path]) -> None:
    from cctvsr.jobs.enhance import EnhanceOptions
    from cctvsr.jobs.options import SrOptions

    (source,) = list_sources(str(lab["long"]))
    options = EnhanceOptions(source=str(lab["long"]), out=lab["root"] / "unused", sr=SrOptions()).pipeline()
    times = frame_times(source)
    assert times is not None and len(times) == 192
    units = plan_input(0, source, times, options, float(SEGMENT))
    assert [u.own_start for u in units] == [0, *CUTS] and [u.own_end for u in units] == [*CUTS, None]
    assert [f for f in range(192) for u in units if u.owns(f)] == list(range(192))
    overlap = overlap_frames(12.0, options)
    assert overlap >= 12 + 2 + 3  # the tracker's one-second lost-track buffer, two confirming frames, the gate's warm-up
    decoded_from = [0 if u.start is None else next(i for i, t in enumerate(times) if t >= u.start) for u in units]
    assert all(first <= max(0, u.own_start - overlap) for first, u in zip(decoded_from, units))
    assert decoded_from[-1] > 0  # the last segments really start past the beginning: the overlap is what rebuilds the state
    assert plan_input(0, source, times, options, 10.0) == [WorkUnit(0, 0, 1, 0, None, None, None)]


def test_ray_run_of_two_whole_files_equals_one_machine_byte_for_byte(
    lab: dict[str, Path], single_runs: dict[str, Path], local_ray: Any
) -> None:
    out = lab["root"] / "ray-folder"
    result = runner.invoke(app, ["enhance", str(lab["clips"]), "--out", str(out), "--model", str(lab["slow"]), *OPTIONS, "--ray", "local"])
    assert result.exit_code == 0, result.output
    assert "Ray nodes" in result.stdout  # the summary's per-node table
    assert _same_as_one_machine(single_runs["folder"], out) >= 6


def test_ray_run_of_a_file_cut_into_segments_equals_one_machine_and_joins_tracks_across_the_cuts(
    lab: dict[str, Path], single_runs: dict[str, Path], local_ray: Any
) -> None:
    out = lab["root"] / "ray-segments"
    _enhance(lab["long"], out, lab["slow"], "--ray", "local", "--segment-minutes", SEGMENT)
    assert _same_as_one_machine(single_runs["long"], out) >= 6
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    tracks = json.loads((folder / "tracks.json").read_text())["tracks"]
    crossing = [t for t in tracks if any(t["first"]["frame"] < cut <= t["last"]["frame"] for cut in CUTS)]
    assert crossing, "no track crosses a cut: the join was not tested"


def test_an_sr_actor_killed_mid_run_loses_no_face_and_writes_none_twice(
    lab: dict[str, Path], single_runs: dict[str, Path], local_ray: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cctvsr.cluster import driver

    killed: list[int] = []
    pids: list[int] = []
    received = driver._Cluster._super_resolved

    def kill_an_actor_on_the_first_unit(self: Any, row: dict[str, Any]) -> None:
        pids.append(int(row["pid"]))
        if not killed:
            killed.append(pids[0])
            os.kill(pids[0], signal.SIGKILL)  # the actor that just answered, with calls still queued
        received(self, row)

    monkeypatch.setattr(driver._Cluster, "_super_resolved", kill_an_actor_on_the_first_unit)
    out = lab["root"] / "ray-killed"
    _enhance(lab["clips"], out, lab["slow"], "--ray", "local")
    assert killed and len(pids) >= 6  # the run went on after the kill (results the actor finished before it may still come)
    _same_as_one_machine(single_runs["folder"], out)


def test_driver_killed_mid_run_resumes_on_ray_to_one_machines_outputs(
    lab: dict[str, Path], single_runs: dict[str, Path], local_ray: Any
) -> None:
    out = lab["root"] / "ray-driver-killed"
    args = [sys.executable, "-m", "cctvsr", "enhance", str(lab["clips"]), "--out", str(out), "--model", str(lab["slow"]), *OPTIONS, "--ray"]
    process = subprocess.Popen([*args, "auto"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # joins the module's Ray
    deadline = time.monotonic() + 180
    written = 0
    while time.monotonic() < deadline and process.poll() is None:
        written = sum(m.read_bytes().count(b"\n") for m in out.glob("*/manifest.jsonl"))
        if written >= 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    total = sum(len(_verified(folder)) for folder in single_runs["folder"].iterdir() if folder.is_dir())
    assert 2 <= written < total

    resumed = runner.invoke(app, [*args[3:], "local", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    _same_as_one_machine(single_runs["folder"], out)


def test_ray_without_the_cluster_extra_is_a_one_line_error(lab: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as where it is not installed
    result = runner.invoke(app, ["enhance", str(lab["long"]), "--out", str(lab["root"] / "no-ray"), "--ray", "local"])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(errors) == 1 and "pip install 'cctvsr[cluster]'" in errors[0], result.stderr
    assert not (lab["root"] / "no-ray").exists()


def test_a_single_machine_run_never_imports_ray(lab: dict[str, Path], tmp_path: Path) -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from cctvsr.cli import app; "
        f"r = CliRunner().invoke(app, ['enhance', {str(lab['long'])!r}, '--out', {str(tmp_path / 'out')!r}, '--model', {str(lab['tiny'])!r}, "
        "'--end', '1']); assert r.exit_code == 0, r.output; print('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("option", [["--fuse"], ["--all-frames"], ["--annotate", "annotated.mp4"]])
def test_options_one_machine_runs_alone_are_refused_on_ray_in_one_line(lab: dict[str, Path], option: list[str]) -> None:
    _ray()
    out = lab["root"] / f"refused-{option[0].strip('-')}"
    fuse = [] if option == ["--fuse"] else ["--no-fuse"]  # fusion is on by default, and refused first
    result = runner.invoke(app, ["enhance", str(lab["long"]), "--out", str(out), "--ray", "local", *option, *fuse])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert len(errors) == 1 and option[0] in errors[0] and "--ray" in errors[0], result.stderr
    assert not out.exists()
