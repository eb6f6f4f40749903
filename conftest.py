"""Root conftest: pytester for plugin tests and a deterministic hypothesis profile.

The ``ci`` profile (derandomized, no example database, no deadline) makes every
run of the suite draw the same examples, so a verdict never flips between runs.
"""

from hypothesis import settings

# The checker, imported before any test runs: pytester's in-process runs drop the modules
# first imported inside them, and a module imported again would bring a second `Status`
# enum that the first one's results are not equal to.
import gradverify.checks
import gradverify.cli  # noqa: F401

pytest_plugins = ["pytester"]

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.load_profile("ci")
