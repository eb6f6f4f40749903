"""``python -m gradverify`` is the ``gradverify`` command."""

import sys

from gradverify.cli import main

if __name__ == "__main__":
    sys.exit(main())
