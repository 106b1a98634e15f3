"""pyseg's built-in plugins (installed as the package ``pyseg_plugins``).

``BUILTIN`` names every built-in plugin module; :mod:`pyseg.registry` registers them
explicitly, in this order, before any third-party plugin. Add a module here when you add
one: nothing under this package is discovered implicitly.
"""

BUILTIN: tuple[str, ...] = (
    "pyseg_plugins.architectures",
    "pyseg_plugins.datasets",
)
