"""Start-up time of the command line: ``patchfield --help`` against ``python -c "import torch"``.

The command line imports torch (every subcommand needs it) and nothing heavier until a subcommand
runs: no timm, transformers, matplotlib or open_clip for ``--help``. This script times, interleaved
in one run so that noise on a shared machine hits all alike, the wall time of fresh interpreters
running ``import torch``, ``patchfield --help`` and ``patchfield analyze --help``, and reports the
medians and their ratios. Target: at most 1.5x ``import torch`` for both.

The last line is one JSON object with ``help_over_torch``, ``analyze_help_over_torch`` and the
median seconds.

Usage: ``python benchmarks/startup.py [--repeats 5]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "torch": [sys.executable, "-c", "import torch"],
    "help": [sys.executable, "-m", "patchfield", "--help"],
    "analyze_help": [sys.executable, "-m", "patchfield", "analyze", "--help"],
}


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    for cmd in COMMANDS.values():  # warm the file cache
        _wall(cmd)
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for _ in range(args.repeats):
        for key, cmd in COMMANDS.items():
            times[key].append(_wall(cmd))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {k: med[k] / med["torch"] for k in ("help", "analyze_help")}
    print(f"start-up, median of {args.repeats}: import torch {med['torch']:.2f}s, patchfield --help "
          f"{med['help']:.2f}s ({ratio['help']:.2f}x), patchfield analyze --help {med['analyze_help']:.2f}s "
          f"({ratio['analyze_help']:.2f}x); target <= 1.5x", flush=True)
    print(json.dumps({
        "help_over_torch": round(ratio["help"], 3),
        "analyze_help_over_torch": round(ratio["analyze_help"], 3),
        **{f"{k}_s": round(v, 3) for k, v in med.items()},
    }))


if __name__ == "__main__":
    main()
