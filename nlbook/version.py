"""The package version, in the lowest layer so that every module can print it without importing the package."""

__version__ = "0.1.0"
