"""Build of the optional compiled hot path; all other metadata lives in pyproject.toml.

``cdc_assets/decoding/_speedups.pyx`` is the compiled twin of ``pgoutput.py``'s per-message
functions. It is optional: without Cython or without a working C compiler the install still
succeeds (with a warning) and ``cdc_assets.decoding.codec`` uses the pure-Python reference.
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SPEEDUPS = "cdc_assets/decoding/_speedups.pyx"


def extensions() -> list[Extension]:
    """The optional extension, cythonized; none when Cython is missing (warned)."""
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("warning: no Cython: the compiled hot path is not built", file=sys.stderr)
        return []
    ext = Extension("cdc_assets.decoding._speedups", [SPEEDUPS], optional=True)
    return list(cythonize([ext], language_level=3, quiet=True))


class OptionalBuildExt(build_ext):
    """``build_ext`` that warns instead of failing: no compiler means the pure-Python path."""

    def run(self) -> None:
        """Build all extensions; any failure is a warning (the extension is optional)."""
        try:
            super().run()
        except Exception as exc:  # a missing compiler surfaces as several distutils errors
            self._skip("build_ext", exc)

    def build_extension(self, ext: Extension) -> None:
        """Build one extension; a compiler error is a warning (the extension is optional)."""
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._skip(ext.name, exc)

    @staticmethod
    def _skip(what: str, exc: BaseException) -> None:
        print(
            f"warning: {what} not built ({exc}); cdc_assets uses the pure-Python decoder",
            file=sys.stderr,
        )


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
