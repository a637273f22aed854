"""`enhance --ray` against one machine: what a local Ray cluster gains per worker, and what it costs (issue 18).

Why this script exists: a cluster is only worth its set-up if a second worker nearly doubles the
work done, and `--ray local` on one machine must not be much slower than the plain run it replaces.

N demo clips (made as `samples/make_demo_clip.py` makes them, from a real group photo, each with its
own sensor noise) in one folder go through `enhance` with the defaults but `--no-fuse` (fusion does
not run on Ray yet), four ways, each in a fresh
process so that its peak memory is its own:

* plain      — one machine, no Ray (torch and ONNX Runtime on their default threads);
* ray, 1 worker  — `ray.init(num_cpus=1)`, then `--ray local` joins it: one task or actor at a time;
* ray, 2 workers — `ray.init(num_cpus=2)`: two at a time (one torch / ONNX Runtime thread each);
* --ray local — the command as a user runs it (Ray started by `enhance` on every CPU here).

Printed per run: wall time including Ray's start-up, frames per second, the driver's peak RSS; then
2 workers / 1 worker and --ray local / plain (throughput ratios, measured in this one run), and
whether every run's manifests equal the plain run's (faces, boxes, every file's sha256).
Bars (issue 18, on an idle machine): 2 workers ≥ 1.6× 1 worker; --ray local ≥ 0.85× plain.

Run:  .venv/bin/python benchmarks/cluster.py [--clips 4] [--seconds 20]      (≈ 5 min on 2 cores)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

WORKER_BAR = 1.6
LOCAL_BAR = 0.85
MODES = {"plain": "none", "ray, 1 worker": "1", "ray, 2 workers": "2", "--ray local": "local"}


def one_run(clips: Path, out: Path, workers: str) -> dict[str, float]:
    """One enhance run in this process (the child's side): wall time, frames, peak RSS in MiB.
    workers: "none" (no Ray), "local" (`--ray local` starts Ray on every CPU) or a CPU count for Ray."""
    from cctvsr.jobs.enhance import EnhanceOptions, run
    from cctvsr.jobs.options import FusionOptions

    started = time.perf_counter()
    if workers.isdigit():  # a Ray instance of that many CPUs, which `--ray local` joins instead of starting its own
        import ray

        ray.init(address="local", num_cpus=int(workers), include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False)
    summary = run(EnhanceOptions(source=str(clips), out=out, ray=None if workers == "none" else "local", fusion=FusionOptions(fuse=False)))
    wall = time.perf_counter() - started
    assert not summary.failed, summary.failed
    frames = sum(done.result.frames for done in summary.done if done.result is not None)
    return {"wall": wall, "frames": frames, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def manifests(out: Path) -> dict[str, list[dict]]:
    """Each input folder's manifest records (what must equal the plain run's)."""
    return {
        folder.name: [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]
        for folder in sorted(out.iterdir()) if (folder / "manifest.jsonl").is_file()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=4, help="demo clips in the input folder (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each clip (default 20 s at 12 fps)")
    parser.add_argument("--child", nargs=3, metavar=("CLIPS", "OUT", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        clips, out, workers = args.child
        print(json.dumps(one_run(Path(clips), Path(out), workers)))
        return 0
    if importlib.util.find_spec("ray") is None:
        print("benchmarks/cluster.py needs Ray: pip install -e '.[cluster]'", file=sys.stderr)
        return 2

    from cctvsr.device import describe_cpu
    from samples.make_demo_clip import gt_path, make_demo_clip

    print(f"CPU: {describe_cpu()}; {args.clips} demo clips of {args.seconds:g} s (480×270, 12 fps), enhance defaults, --no-fuse")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for k in range(args.clips):
            clip = make_demo_clip(root / "clips" / f"clip{k}.mp4", seconds=args.seconds, seed=10 + k)
            gt_path(clip).unlink()
        figures: dict[str, dict[str, float]] = {}
        print("| run | wall | frames/s | driver peak RSS |\n|---|---:|---:|---:|")
        for label, workers in MODES.items():
            out = root / f"out-{len(figures)}"
            child = [sys.executable, __file__, "--child", str(root / "clips"), str(out), workers]
            done = subprocess.run(child, capture_output=True, text=True, cwd=REPO)
            if done.returncode != 0:
                print(f"{label}: failed\n{done.stderr[-3000:]}", file=sys.stderr)
                return 1
            figures[label] = json.loads(done.stdout.strip().splitlines()[-1])
            f = figures[label]
            print(f"| {label} | {f['wall']:.1f} s | {f['frames'] / f['wall']:.1f} | {f['rss_mib']:.0f} MiB |", flush=True)
            if label != "plain" and manifests(out) != manifests(root / "out-0"):
                print(f"{label}: the manifests differ from the plain run's — FAIL")
                ok = False
        rate = {label: f["frames"] / f["wall"] for label, f in figures.items()}
        workers = rate["ray, 2 workers"] / rate["ray, 1 worker"]
        local = rate["--ray local"] / rate["plain"]
        print(f"\n2 workers / 1 worker: {workers:.2f}× (bar ≥ {WORKER_BAR}); --ray local / plain: {local:.2f}× (bar ≥ {LOCAL_BAR}); "
              f"every run's outputs equal the plain run's: {'yes' if ok else 'no'}")
        ok &= workers >= WORKER_BAR and local >= LOCAL_BAR
    print("all bars met" if ok else "a bar was missed")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
