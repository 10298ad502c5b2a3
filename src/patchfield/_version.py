"""The package version, in one place: read by ``pyproject.toml`` (setuptools' dynamic version) and ``patchfield``."""

__version__ = "0.1.0"
