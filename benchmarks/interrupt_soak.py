"""Interrupt soak: Ctrl-C and --timeout during `plait ask` on the bundled model.

    python benchmarks/interrupt_soak.py [--trials 20] [--seed 1] [--only sigint|timeout]

Each trial runs `plait ask "..." --model local --journal J --run-id R` in a
subprocess (tests/compiler/interrupt_trial.py). Ctrl-C trials send SIGINT by pid
at a random instant: 0-3 s after the view shows the run started (loading the
model, evaluating the planner's prompt), 0-1.5 s after the first plan line
(decoding), or 0-1.5 s after the first task is done (the joiner's prompt, its
decoding). Timeout trials pass `--timeout` drawn from 0.5 s to 90% of an
uninterrupted run's time (measured first); their seconds to exit count from the
deadline (the view's start, dated by its first line, plus the timeout). Every trial must exit with 130 (SIGINT) or 124
(--timeout), no segmentation fault, no traceback, its journal saying `cancelled`
with a result for every task the view showed done. Prints one line per trial,
then a table; exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.compiler.interrupt_trial import EXPECTED, Trial, run_trial  # noqa: E402

TRIGGERS = (("started", 0.0, 3.0), ("planning", 0.0, 1.5), ("joining", 0.0, 1.5))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20, help="trials per kind")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", choices=sorted(EXPECTED), help="one kind of trial only")
    args = p.parse_args()
    rng = random.Random(args.seed)
    kinds = [args.only] if args.only else ["sigint", "timeout"]
    results: dict[str, list[tuple[Trial, list[str]]]] = {k: [] for k in kinds}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="plait-interrupt-") as tmp:
        whole = uninterrupted(Path(tmp)) if "timeout" in kinds else 0.0
        print(f"an uninterrupted run takes {whole:.1f} s from the view's start", flush=True)
        for i in range(args.trials):
            for kind in kinds:
                if kind == "sigint":
                    trigger, low, high = TRIGGERS[i % len(TRIGGERS)]
                else:
                    trigger, low, high = "timeout", 0.5, max(0.9 * whole, 1.0)
                delay = round(rng.uniform(low, high), 2)
                trial = run_trial(kind, trigger, delay, Path(tmp), f"{kind}-{i}")
                for retry in range(3):
                    if kind != "timeout" or trial.phase != "finished":
                        break
                    # Answered before the deadline (the calibration run was slower,
                    # from a cold start): no timeout was tested, so try a shorter one.
                    delay = round(delay * 0.7, 2)
                    trial = run_trial(kind, trigger, delay, Path(tmp), f"{kind}-{i}-{retry}")
                problems = trial.problems()  # now: the trial's journal goes with `tmp`
                results[kind].append((trial, problems))
                print(f"[{time.perf_counter() - t0:6.1f}s] {kind:7} {i + 1:3}/{args.trials}  "
                      f"{trigger:>8} +{delay:4.2f}s  phase {trial.phase:14}  "
                      f"exit {trial.returncode} in {trial.exit_s:.2f}s  "
                      f"{'; '.join(problems) or 'ok'}", flush=True)
    wall = time.perf_counter() - t0

    print(f"\ninterrupt soak, seed {args.seed}, {wall:.0f} s")
    header = ("kind", "trials", "segfaults", "wrong exit codes", "other problems",
              "max s to exit", "phases", "target")
    rows = []
    missed = False
    for kind, done in results.items():
        trials = [t for t, _ in done]
        segfaults = sum(t.segfault for t in trials)
        wrong = sum(t.returncode != EXPECTED[kind] and not t.segfault for t in trials)
        other = sum(1 for t, problems in done if t.returncode == EXPECTED[kind] and problems)
        longest = max((t.exit_s for t in trials), default=0.0)
        phases: dict[str, int] = {}
        for t in trials:
            phases[t.phase] = phases.get(t.phase, 0) + 1
        met = segfaults == 0 and wrong == 0 and other == 0
        missed |= not met
        rows.append((kind, str(len(trials)), str(segfaults), str(wrong), str(other),
                     f"{longest:.2f}", ", ".join(f"{n} {p}" for p, n in sorted(phases.items())),
                     f"{'met' if met else 'MISSED'} (0 segfaults, exit {EXPECTED[kind]})"))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    return 1 if missed else 0


def uninterrupted(workdir: Path) -> float:
    """Seconds from the view's start to the answer, in one run left alone (a
    timeout trial far past it would be just an answered question)."""
    trial = run_trial("timeout", "timeout", 600.0, workdir, "whole")
    if trial.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed ({trial.returncode}):\n{trial.stderr}")
    return trial.exit_s + 600.0  # exit_s counts from the view's start + the timeout


if __name__ == "__main__":
    sys.exit(main())
