"""Every chapter — the package version.

It lives in the lowest layer so that every module can print it without importing the package itself.
"""

__version__ = "0.1.0"
