from pyseg.data.hide_and_seek import HideAndSeek  # noqa: F401
