"""The package version, in a module of its own so that any module can read it without importing
the package's front door (and pyproject.toml reads it for the wheel's metadata)."""

__version__ = "0.1.0"
