"""Start-up time of the command line: `imagefit --help`, `imagefit models`, `imagefit inspect` and a usage error.

Each command runs in a fresh interpreter (as a user types it), several times;
the median wall time is reported, and whether torch was imported (the one
import that costs seconds). Writes the `startup` section of BENCHMARKS.md.

    python bench/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, provenance, update_section

SAMPLE = ROOT / "src" / "imagefit" / "sample_data"
# Runs `imagefit` as the console script does, then says whether torch got imported.
PROBE = (
    "import sys; sys.argv = ['imagefit', *sys.argv[1:]]\n"
    "import os\nfrom imagefit.cli import main\n"
    "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code or 0\n"
    "sys.stdout.flush(); os.write(2, ('\\nTORCH=%d RC=%s\\n' % ('torch' in sys.modules, rc)).encode()); os._exit(0)"
)


def measure(args: list[str], runs: int) -> tuple[float, bool, str]:
    """Median seconds over ``runs`` fresh interpreters; whether torch was imported; the exit code."""
    times, torch, rc = [], False, "?"
    for _ in range(runs):
        start = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300)
        times.append(time.perf_counter() - start)
        tail = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else ""
        torch = "TORCH=1" in tail
        rc = tail.split("RC=")[-1] if "RC=" in tail else f"crash ({p.returncode})"
    return statistics.median(times), torch, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="fresh interpreters per command (the median is reported)")
    runs = ap.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty"
        empty.mkdir()
        cases = [
            ("`imagefit --help`", ["--help"]),
            ("`imagefit train --help`", ["train", "--help"]),
            ("usage error: `imagefit train DATA --strategy magic`", ["train", str(SAMPLE), "--strategy", "magic"]),
            ("`imagefit inspect` of the bundled sample (48 photos)", ["inspect", str(SAMPLE)]),
            ("error: `imagefit inspect` of an empty folder", ["inspect", str(empty)]),
            ("error: `imagefit train` of an empty folder", ["train", str(empty)]),
            ("`imagefit models`", ["models"]),
        ]
        rows = []
        for label, args in cases:
            seconds, torch, rc = measure(args, runs)
            rows.append(f"| {label} | {seconds:.2f} | {'yes' if torch else 'no'} | {rc} |")
            print(rows[-1], flush=True)
    body = "\n".join(
        [
            f"Median wall time of {runs} fresh interpreters per command (the process, start to exit), "
            "and whether torch was imported. The goal: `--help` and usage errors under 0.5 s, "
            "`inspect` of a folder without torch.",
            "",
            "| command | seconds | torch imported | exit code |",
            "|---|---|---|---|",
            *rows,
            "",
            provenance(),
        ]
    )
    update_section("startup", "Start-up", body)


if __name__ == "__main__":
    main()
