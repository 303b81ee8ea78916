"""The version of simbench (one place; the package, the manifest and the leaderboards read it)."""

__version__ = "0.1.0"
