"""Run every command of two cctvsr versions on the same inputs and compare what they write.

Why: a restructuring (issue 14) must leave every output the same. This runs `enhance`, `upscale`,
`calibrate`, `finetune`, `evaluate` and `export-onnx` of an older commit (checked out into a
temporary git worktree) and of this working tree on the demo clip, real photos and a real clip,
with a tiny seeded generator so it takes minutes, not hours; then compares each output file:

* byte for byte first;
* where the bytes differ, JSON / JSON-lines files are compared again without the fields listed in
  IGNORED (times, durations, versions, the schema number a newer version adds), PNG files by their
  pixels and their text chunks, and .onnx files by their tensors and metadata without IGNORED keys.

It prints one line per file that still differs, the ignored fields, and a last line saying whether
the two versions agree. Both versions run in this virtual environment (PYTHONPATH picks the code).

Run:  .venv/bin/python scripts/compare_outputs.py --old 562ae71      (≈ 5 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
# fields that legitimately differ between two runs or two versions: when, how long, which version
IGNORED = {
    "seconds", "elapsed", "duration", "duration_s", "wall_time", "started", "finished", "created", "time", "timestamp",
    "written_at", "started_at", "finished_at", "cctvsr_version", "version", "schema", "speed", "rate", "sr_seconds",
    "decode_seconds", "detect_seconds",
}


def commands(inputs: Path) -> dict[str, list[list[str]]]:
    """Each command's runs (arguments after `cctvsr`); OUT is replaced by that version's output folder."""
    model = str(inputs / "tiny-model")
    photos = str(inputs / "photos")
    return {
        "enhance": [["enhance", str(inputs / "demo.mp4"), "--out", "OUT/enhance", "--model", model, "--every", "6", "--min-track-len", "2"]],
        "upscale": [["upscale", photos, "--out", "OUT/upscale", "--model", model]],
        "calibrate": [["calibrate", "--camera-dir", str(inputs / "camera"), "--out", "OUT/site.pool.npz", "--kernels", "1",
                       "--kernel-iters", "100", "--max-frames", "6", "--jobs", "1"]],
        "finetune": [["finetune", "--pool", str(inputs / "site.pool.npz"), "--hr-dir", photos, "--out", "OUT/finetuned", "--init", "none",
                      "--arch", "2,16,8", "--no-detect-faces", "--workers", "0", "--iters", "4", "--val-every", "2", "--seed", "0"]],
        "evaluate": [["evaluate", "--hr-dir", photos, "--model", model, "--out", "OUT/evaluate", "--no-detect-faces", "--hr-size", "128"]],
        "export-onnx": [["export-onnx", "--model", model, "--out", "OUT/tiny.onnx"]],
    }


def prepare_inputs(inputs: Path) -> None:
    """The demo clip, a tiny seeded generator, real photos and real camera frames, made once for both."""
    sys.path.insert(0, str(REPO))
    import cv2
    import torch

    from cctvsr.sr.rrdb import RRDBConfig, RRDBNet
    from cctvsr.sr.weights import save_model_dir

    subprocess.run([sys.executable, str(REPO / "samples" / "make_demo_clip.py"), str(inputs / "demo.mp4")], check=True, cwd=REPO)
    torch.manual_seed(0)
    config = RRDBConfig(num_block=1, num_feat=8, num_grow_ch=4)
    save_model_dir(inputs / "tiny-model", config, RRDBNet(config).state_dict())
    (inputs / "photos").mkdir()
    for path in sorted((SHARED / "faces_hq").iterdir())[:4]:
        image = cv2.imread(str(path))
        scale = 256 / max(image.shape[:2])
        cv2.imwrite(str(inputs / "photos" / f"{path.stem}.png"), cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    (inputs / "camera").mkdir()
    capture = cv2.VideoCapture(str(SHARED / "video" / "face_recognition__short_hamilton_clip.mp4"))
    for index in range(6):
        ok, frame = capture.read()
        if not ok:
            break
        cv2.imwrite(str(inputs / "camera" / f"frame{index}.png"), frame)
    # finetune's input pool, made once: a pool records when it was made, and finetune records its sha256
    subprocess.run([sys.executable, "-m", "cctvsr", "calibrate", "--camera-dir", str(inputs / "camera"), "--out", str(inputs / "site.pool.npz"),
                    "--kernels", "1", "--kernel-iters", "100", "--max-frames", "6", "--jobs", "1"], check=True, cwd=REPO, capture_output=True)


def run_version(root: Path, out: Path, runs: dict[str, list[list[str]]], log: Path) -> dict[str, int]:
    """Exit code of each command of the version whose code is at `root`."""
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "100", "CCTVSR_NO_COLOR": "1"}
    codes = {}
    out.mkdir(parents=True)
    with open(log, "w") as handle:
        for name, argument_lists in runs.items():
            for arguments in argument_lists:
                arguments = [a.replace("OUT", str(out)) for a in arguments]
                handle.write(f"$ cctvsr {' '.join(arguments)}\n")
                handle.flush()
                result = subprocess.run([sys.executable, "-m", "cctvsr", *arguments], cwd=root, env=env, stdout=handle, stderr=subprocess.STDOUT)
                codes[name] = result.returncode
    return codes


def _strip(value: object, out: str) -> object:
    """Without IGNORED fields, the version's own output folder spelled OUT."""
    if isinstance(value, dict):
        return {k: _strip(v, out) for k, v in value.items() if k not in IGNORED}
    if isinstance(value, list):
        return [_strip(v, out) for v in value]
    return value.replace(out, "OUT") if isinstance(value, str) else value


def _json_values(path: Path, out: Path) -> object:
    text = path.read_text()
    if path.suffix == ".jsonl":
        return [_strip(json.loads(line), str(out)) for line in text.splitlines() if line.strip()]
    return _strip(json.loads(text), str(out))


def _json_same(a: Path, b: Path, outs: tuple[Path, Path]) -> bool:
    return _json_values(a, outs[0]) == _json_values(b, outs[1])


def _npz_same(a: Path, b: Path, outs: tuple[Path, Path]) -> bool:
    """Arrays equal; a uint8 `header` array is JSON and compared as such (a pool's header says when it was made)."""
    import numpy as np

    first, second = np.load(a, allow_pickle=False), np.load(b, allow_pickle=False)
    if sorted(first.files) != sorted(second.files):
        return False
    for key in first.files:
        if key == "header":
            headers = [_strip(json.loads(bytes(f[key]).decode()), str(out)) for f, out in ((first, outs[0]), (second, outs[1]))]
            if headers[0] != headers[1]:
                return False
        elif not np.array_equal(first[key], second[key]):
            return False
    return True


def _csv_same(a: Path, b: Path, outs: tuple[Path, Path]) -> bool:
    """Cells equal, except in the columns IGNORED names (a column header's first word)."""
    import csv

    tables = [list(csv.reader(p.read_text().replace(str(out), "OUT").splitlines())) for p, out in ((a, outs[0]), (b, outs[1]))]
    if not tables[0] or tables[0][0] != tables[1][0] or len(tables[0]) != len(tables[1]):
        return False
    kept = [i for i, name in enumerate(tables[0][0]) if name.split(" ")[0] not in IGNORED]
    return all([row[i] for i in kept] == [other[i] for i in kept] for row, other in zip(tables[0], tables[1]))


def _png_same(a: Path, b: Path, outs: tuple[Path, Path]) -> bool:
    import numpy as np
    from PIL import Image

    first, second = Image.open(a), Image.open(b)
    texts = [{k: v.replace(str(out), "OUT") for k, v in image.text.items() if k not in IGNORED} for image, out in ((first, outs[0]), (second, outs[1]))]
    return texts[0] == texts[1] and np.array_equal(np.asarray(first), np.asarray(second))


def _onnx_same(a: Path, b: Path, outs: tuple[Path, Path]) -> bool:
    import onnx
    from onnx import numpy_helper

    models = [onnx.load(str(p)) for p in (a, b)]
    meta = [{p.key: p.value for p in m.metadata_props if p.key not in IGNORED} for m in models]
    tensors = [{t.name: numpy_helper.to_array(t).tobytes() for t in m.graph.initializer} for m in models]
    return meta[0] == meta[1] and tensors[0] == tensors[1]


def compare(old: Path, new: Path) -> list[str]:
    """One line per file that differs (beyond IGNORED fields) or exists in one version only."""
    problems = []
    names = {p.relative_to(old) for p in old.rglob("*") if p.is_file()} | {p.relative_to(new) for p in new.rglob("*") if p.is_file()}
    for rel in sorted(names):
        a, b = old / rel, new / rel
        if not a.exists() or not b.exists():
            problems.append(f"{rel}: only in the {'new' if b.exists() else 'old'} version")
            continue
        if a.read_bytes() == b.read_bytes():
            continue
        if a.suffix in (".html", ".txt") and a.read_text().replace(str(old), "OUT") == b.read_text().replace(str(new), "OUT"):
            continue
        checks = {".json": _json_same, ".jsonl": _json_same, ".png": _png_same, ".onnx": _onnx_same, ".npz": _npz_same, ".csv": _csv_same}
        same = checks.get(a.suffix)
        if same is None or not same(a, b, (old, new)):
            problems.append(f"{rel}: differs")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="git revision of the older version (e.g. the commit before a refactor)")
    parser.add_argument("--new", help="git revision of the newer version (default: this working tree as it is)")
    parser.add_argument("--keep", type=Path, help="keep inputs, outputs and logs in this folder")
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"error: {SHARED} not found: the comparison runs on the shared real photos and footage", file=sys.stderr)
        return 2
    work = Path(args.keep or tempfile.mkdtemp(prefix="cctvsr-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    trees = {"old": work / "old-tree", "new": work / "new-tree" if args.new else REPO}
    for label, revision in (("old", args.old), ("new", args.new)):
        if revision:
            subprocess.run(["git", "worktree", "remove", "--force", str(trees[label])], cwd=REPO, capture_output=True, check=False)
            subprocess.run(["git", "worktree", "add", "--detach", str(trees[label]), revision], cwd=REPO, check=True, capture_output=True)
    try:
        inputs = work / "inputs"
        shutil.rmtree(inputs, ignore_errors=True)
        inputs.mkdir()
        prepare_inputs(inputs)
        runs = commands(inputs)
        outputs = {}
        for label, root in trees.items():
            shutil.rmtree(work / label, ignore_errors=True)
            codes = run_version(root, work / label, runs, work / f"{label}.log")
            outputs[label] = codes
            print(f"{label} ({(args.old if label == 'old' else args.new) or 'working tree'}): " + ", ".join(f"{k} exit {v}" for k, v in codes.items()), flush=True)
        problems = compare(work / "old", work / "new")
        if outputs["old"] != outputs["new"]:
            problems.append(f"exit codes differ: old {outputs['old']}, new {outputs['new']}")
        for line in problems:
            print(line)
        print(f"ignored fields: {', '.join(sorted(IGNORED))}")
        print("the two versions agree" if not problems else f"{len(problems)} differences (logs in {work})")
        return 0 if not problems else 1
    finally:
        for tree in trees.values():
            if tree != REPO:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True, check=False)


if __name__ == "__main__":
    raise SystemExit(main())
