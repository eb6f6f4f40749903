"""``gradverify grade`` and ``gradverify autograder``: grading from the shell.

    gradverify grade ASSIGNMENT.toml SUBMISSIONS --out OUT [--workers N | --scheduler ADDR]
    gradverify grade ASSIGNMENT.toml --gradescope [--submission DIR] [--results FILE]
    gradverify autograder ASSIGNMENT.toml -o autograder.zip

``grade`` exits 0 once every submission has a result, whatever the scores; 2 when
the command itself is wrong (a bad assignment file, a missing folder).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gradverify.errors import GradverifyError

GRADESCOPE_SUBMISSION = "/autograder/submission"
GRADESCOPE_RESULTS = "/autograder/results/results.json"


def add_commands(commands: Any) -> None:
    """Register ``grade`` and ``autograder`` on the main parser's subcommands."""
    grade = commands.add_parser("grade", help="grade a class of submissions")
    grade.add_argument("assignment", metavar="ASSIGNMENT.toml", help="the assignment file")
    grade.add_argument(
        "submissions",
        nargs="?",
        metavar="SUBMISSIONS",
        help="a folder with one sub-folder (or .ipynb notebook) per submission",
    )
    grade.add_argument("--out", metavar="OUT", help="where results go (with SUBMISSIONS)")
    grade.add_argument(
        "--workers", type=int, default=None, metavar="N", help="local processes (default: cores)"
    )
    grade.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on a Dask cluster instead, e.g. tcp://HOST:8786 (pip install gradverify[dask])",
    )
    grade.add_argument(
        "--resume", action="store_true", help="keep the submissions OUT already has, grade the rest"
    )
    grade.add_argument(
        "--gradescope",
        action="store_true",
        help="grade the one submission of a Gradescope autograder run",
    )
    grade.add_argument(
        "--submission", default=GRADESCOPE_SUBMISSION, help="with --gradescope: its folder"
    )
    grade.add_argument(
        "--results", default=GRADESCOPE_RESULTS, help="with --gradescope: results.json to write"
    )
    pack = commands.add_parser("autograder", help="write a Gradescope autograder zip")
    pack.add_argument("assignment", metavar="ASSIGNMENT.toml", help="the assignment file")
    pack.add_argument("-o", "--output", default="autograder.zip", help="the zip to write")


def run(arguments: argparse.Namespace) -> int:
    """Run ``grade`` or ``autograder``; errors of the command line are one line and exit 2."""
    try:
        if arguments.command == "autograder":
            from gradverify.grading.autograder import write_zip

            path = write_zip(arguments.assignment, arguments.output)
            print(f"wrote {path}: upload it as the autograder of the assignment on Gradescope")
            return 0
        return _grade(arguments)
    except GradverifyError as error:
        print(f"gradverify: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a folder or file the command names cannot be written
        print(f"gradverify: error: {error.strerror}: {error.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        resumable = arguments.command == "grade" and not arguments.gradescope
        after = " every finished submission is in results.jsonl, and --resume grades the rest."
        print(f"gradverify: interrupted;{after if resumable else ''}", file=sys.stderr)
        return 130


def _grade(arguments: argparse.Namespace) -> int:
    from gradverify.grading.runner import grade, grade_one

    if arguments.gradescope:
        document = grade_one(arguments.assignment, arguments.submission, arguments.results)
        print(f"score {document['score']:g}: wrote {arguments.results}")
        return 0
    if not arguments.submissions or not arguments.out:
        raise _usage("give SUBMISSIONS and --out OUT, or --gradescope")
    if arguments.workers is not None and arguments.workers < 1:
        raise _usage(f"--workers must be at least 1, got {arguments.workers}")
    done = grade(
        arguments.assignment,
        arguments.submissions,
        arguments.out,
        workers=arguments.workers,
        scheduler=arguments.scheduler,
        resume=arguments.resume,
    )
    kept = f" ({done.kept} kept from before)" if done.kept else ""
    print(
        f"graded {done.graded} submission(s){kept} in {done.seconds:.1f} s: "
        f"{done.out}/results.jsonl, {done.out}/summary.md, {done.out}/summary.html"
    )
    return 0


def _usage(text: str) -> GradverifyError:
    from gradverify.errors import InvalidArgument

    return InvalidArgument(f"{text}; see gradverify grade --help.")
