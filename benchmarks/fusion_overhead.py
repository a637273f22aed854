"""enhance's wall time on the demo clip with --fuse against --no-fuse, in one run (issue 16: bar ≤ 1.4×).

Run:  .venv/bin/python benchmarks/fusion_overhead.py [--model NAME] [--end SECONDS]
Default model: the tiny test model (SR is cheap there, so this is the strictest ratio).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cctvsr.jobs.enhance import EnhanceOptions, run  # noqa: E402
from cctvsr.jobs.options import FusionOptions, SrOptions  # noqa: E402
from samples.make_demo_clip import make_demo_clip  # noqa: E402

BAR = 1.4


def cpu_kind() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), "unknown")
    kind = "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else "no bf16"
    return f"{model} ({kind})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="SR model (default: the tiny test model)")
    parser.add_argument("--end", type=float, default=None, help="only the first SECONDS of the clip")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clip = make_demo_clip(root / "demo.mp4")
        model = args.model
        if model is None:
            from cctvsr.sr.weights import save_model_dir
            from tests.conftest import tiny_weights

            w = tiny_weights()
            model = str(save_model_dir(root / "tiny", w.config, w.state_dict))
        times = {}
        for name, fuse in (("--no-fuse", False), ("--fuse", True)):
            options = EnhanceOptions(source=str(clip), out=root / name, sr=SrOptions(model=model), end=args.end,
                                     fusion=FusionOptions(fuse=fuse))
            start = time.perf_counter()
            run(options)
            times[name] = time.perf_counter() - start
    ratio = times["--fuse"] / times["--no-fuse"]
    print(f"enhance on the demo clip, CPU: {cpu_kind()}, model {args.model or 'tiny test model'}: "
          f"--no-fuse {times['--no-fuse']:.1f} s, --fuse {times['--fuse']:.1f} s, ratio {ratio:.2f}× "
          f"({'PASS' if ratio <= BAR else 'FAIL'}, bar ≤ {BAR}×)")
    return 0 if ratio <= BAR else 1


if __name__ == "__main__":
    sys.exit(main())
