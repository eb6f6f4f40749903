"""The zip an instructor uploads to Gradescope as an assignment's autograder.

Gradescope builds an image from ``setup.sh`` once, then runs ``run_autograder``
as root for every submission, with the student's files in
``/autograder/submission`` and the zip's in ``/autograder/source``
(gradescope/autograder_samples ``docs/specs.md``).  The zip holds the
assignment file, the reference files it names, and gradverify itself (under
``lib/``, so the image needs only numpy and friends from PyPI); ``setup.sh``
makes the source folder unreadable to others, so a submission, which runs as
its own unprivileged user, cannot read the reference solution.
"""

from __future__ import annotations

import os
import shlex
import zipfile

import gradverify
from gradverify.errors import InvalidArgument
from gradverify.grading.against import verify_references
from gradverify.grading.assignment import load_assignment

SETUP = """\
#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image.
set -euo pipefail
apt-get update
apt-get install -y python3 python3-pip python3-venv
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install "numpy>=1.23" "hypothesis>=6.80" "nbformat>=5.7" "rich>=13" \\
    "tomli>=2; python_version < '3.11'"
chmod -R o= /autograder/source   # submissions run as another user: keep the solution from them
"""

RUN = """\
#!/usr/bin/env bash
# Gradescope runs this for every submission, as root; each check runs sandboxed.
set -uo pipefail
cd /autograder/source
PYTHONPATH=/autograder/source/lib /autograder/venv/bin/python -m gradverify \\
    grade {assignment} --gradescope
"""


def write_zip(assignment_path: str, output: str) -> str:
    """Write the autograder zip for `assignment_path` to `output`; returns its path."""
    assignment = load_assignment(assignment_path)
    folder = os.path.dirname(assignment.path)
    name = os.path.basename(assignment.path)
    references = sorted({c.reference[0] for c in assignment.checks if c.reference is not None})
    for file in references:
        if os.path.relpath(file, folder).startswith(".."):
            raise InvalidArgument(
                f"the reference {file!r} is outside the assignment's folder {folder!r}; "
                f"move it next to the assignment file."
            )
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise InvalidArgument(f"-o {output!r}: its folder does not exist.")
    verify_references(assignment)  # before the zip exists: no half-written archive
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        _text(archive, "setup.sh", SETUP)
        _text(archive, "run_autograder", RUN.format(assignment=shlex.quote(name)))
        archive.write(assignment.path, name)
        for file in references:
            archive.write(file, os.path.relpath(file, folder))
        package = os.path.dirname(os.path.abspath(gradverify.__file__))
        for root, dirs, files in os.walk(package):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for file in files:
                if file.endswith((".py", ".typed")):
                    path = os.path.join(root, file)
                    archive.write(
                        path, os.path.join("lib", os.path.relpath(path, os.path.dirname(package)))
                    )
    return output


def _text(archive: zipfile.ZipFile, name: str, text: str) -> None:
    info = zipfile.ZipInfo(name)
    info.external_attr = 0o755 << 16  # executable, as Gradescope runs them
    archive.writestr(info, text)
