"""Root conftest: pytester for plugin tests and a deterministic hypothesis profile.

The ``ci`` profile (derandomized, no example database, no deadline) makes every
run of the suite draw the same examples, so a verdict never flips between runs.
"""

from hypothesis import settings

pytest_plugins = ["pytester"]

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.load_profile("ci")
