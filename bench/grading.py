"""Grading throughput: submissions per second for the chapter-5 example assignment.

Two classes, graded with ``gradverify grade``'s machinery on 2 local workers:
* 100 copies of the example's correct submission, best of 3 runs: the machines are
  shared, and the same code measures 5 to 9 a second from one minute to the next
  (target: at least 10 per second);
* a mix: 100 submissions, one in ten of each hostile kind the example holds
  (``sneaky`` patches numpy and forges results, ``endless`` never returns from
  Affine.forward, so two of its checks wait out their time limit) and the rest
  correct, partly wrong or notebooks.

    python bench/grading.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from gradverify.grading.runner import grade

EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "assignment")
COPIES = 100
WORKERS = 2
#: One in ten of each hostile kind; the rest correct, partly wrong and notebooks.
MIX = ["sneaky", "endless", "partly_wrong", "notebook.ipynb", "partly_wrong"] + ["correct"] * 5


def _class(folder: str, kinds: list[str]) -> str:
    submissions = os.path.join(folder, "submissions")
    os.makedirs(submissions)
    source = os.path.join(EXAMPLE, "submissions")
    for number in range(COPIES):
        kind = kinds[number % len(kinds)]
        original = os.path.join(source, kind)
        if kind.endswith(".ipynb"):
            shutil.copy(original, os.path.join(submissions, f"{number:03d}.ipynb"))
        else:
            shutil.copytree(original, os.path.join(submissions, f"{number:03d}_{kind}"))
    return submissions


def measure(kinds: list[str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        submissions = _class(folder, kinds)
        started = time.perf_counter()
        grade(
            os.path.join(EXAMPLE, "chapter5.toml"),
            submissions,
            os.path.join(folder, "out"),
            workers=WORKERS,
            progress=False,
        )
        seconds = time.perf_counter() - started
    return seconds, COPIES / seconds


def main() -> None:
    print(f"{'class (100 submissions, 7 checks each)':<58} {'seconds':>8} {'subm./s':>8}")
    for label, kinds, rounds in (
        ("correct copies, best of 3", ["correct"], 3),
        ("mix: 10% sneaky, 10% endless, correct/wrong/notebook", MIX, 1),
    ):
        runs = sorted(measure(kinds) for _ in range(rounds))
        seconds, rate = runs[0]
        print(f"{label:<58} {seconds:>8.1f} {rate:>8.1f}", flush=True)
        if rounds > 1:
            print(f"  (all {rounds}: {', '.join(f'{r:.1f}' for _, r in runs)} per second)")
    print(f"({WORKERS} workers, {os.cpu_count()} cores; endless waits out two 5 s time limits)")


if __name__ == "__main__":
    main()
