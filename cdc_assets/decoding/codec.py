"""Which pgoutput decoder the engine uses: the compiled twin when it is built, else the reference.

``pgoutput.py`` is the reference and the fallback; ``_speedups.pyx`` (built by setup.py when a C
compiler is there) is its compiled twin with the same functions, results and error texts. The
choice is made when asked (:func:`load`, called once per batch), never at import time: the
environment variable :data:`PURE_ENV` set to ``1`` forces the reference (to compare, or to rule the
extension out), and :data:`REQUIRE_ENV` set to ``1`` makes a missing extension an error instead of
a silent fallback (``make test`` sets it, so a build that quietly failed cannot pass as tested).
"""

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

from cdc_assets.decoding import pgoutput
from cdc_assets.decoding.messages import Message, Row

PURE_ENV = "CDC_ASSETS_PURE_PYTHON"
REQUIRE_ENV = "CDC_ASSETS_REQUIRE_SPEEDUPS"


@dataclass(frozen=True, slots=True)
class Codec:
    """The four functions of the read loop, from one implementation; ``compiled`` says which."""

    decode: Callable[[bytes], Message]
    decode_new_row: Callable[[bytes], tuple[int, Row] | None]
    begin_final_lsn: Callable[[bytes], int]
    commit_end_lsn: Callable[[bytes], int]
    compiled: bool


def _of(module: ModuleType, *, compiled: bool) -> Codec:
    return Codec(
        decode=module.decode,
        decode_new_row=module.decode_new_row,
        begin_final_lsn=module.begin_final_lsn,
        commit_end_lsn=module.commit_end_lsn,
        compiled=compiled,
    )


PURE = _of(pgoutput, compiled=False)
"""The reference implementation (always available)."""


def compiled() -> Codec | None:
    """The compiled twin, or None when the extension is not built (no compiler at install)."""
    try:
        speedups = importlib.import_module("cdc_assets.decoding._speedups")
    except ImportError:
        return None
    return _of(speedups, compiled=True)


def load(environ: Mapping[str, str] | None = None) -> Codec:
    """The decoder to use now: compiled unless :data:`PURE_ENV` is ``1`` or it is not built.

    Raises:
        ImportError: :data:`REQUIRE_ENV` is ``1`` and the extension does not import.
    """
    env = os.environ if environ is None else environ
    if env.get(PURE_ENV) == "1":
        return PURE
    fast = compiled()
    if fast is None:
        if env.get(REQUIRE_ENV) == "1":
            raise ImportError(
                f"{REQUIRE_ENV}=1 but cdc_assets.decoding._speedups is not built: "
                "install a C compiler and reinstall (pip install -e .)"
            )
        return PURE
    return fast
