"""lbsim for Python: the `lbsim` binary (installed on PATH by this package's wheel) and a
pytest plugin that starts it in front of an app (`lbsim.pytest_plugin`, loaded by pytest
through the `pytest11` entry point).

`find_binary()` says which binary the plugin runs; `Lbsim` is one running instance.
"""

from lbsim._process import Lbsim, LbsimStartError, find_binary, lbsim_argv

__all__ = ["Lbsim", "LbsimStartError", "find_binary", "lbsim_argv"]
