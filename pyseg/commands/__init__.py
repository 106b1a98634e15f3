"""Subcommands of the ``pyseg`` command (see ``pyseg.cli``)."""
