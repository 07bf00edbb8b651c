"""visent's version and the versions of the packages a recipe records."""

from __future__ import annotations

from importlib import metadata

__version__ = "0.1.0"


def package_version(package: str, default: str | None = "unknown") -> str:
    """The installed version of ``package``; ``default`` when it is not installed (``None``: raise
    ``importlib.metadata.PackageNotFoundError``)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        if default is None:
            raise
        return default
