"""Test-process settings. Only this process: notebook kernels started by nbval or the book build must keep
matplotlib's inline backend (an exported ``MPLBACKEND=Agg`` would silently drop every figure from them)."""

import matplotlib

matplotlib.use("Agg")  # no windows from tests that draw
