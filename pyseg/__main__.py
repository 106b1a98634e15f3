"""``python -m pyseg`` runs the ``pyseg`` command."""

import sys

from pyseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
