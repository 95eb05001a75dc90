"""Both pgoutput decoders for the decoder tests: the pure-Python reference and its compiled twin.

Test modules rebind their module-level decoder names to each implementation in turn (a module-
scoped parametrized fixture, so Hypothesis tests run under both too). Where the extension is not
built, the "compiled" leg runs the reference again; ``test_speedups.py`` is what fails then when
``CDC_ASSETS_REQUIRE_SPEEDUPS=1`` (``make test``) says it must be built.
"""

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from cdc_assets.decoding import codec
from cdc_assets.decoding.codec import Codec

IDS = ["pure", "compiled"]
NAMES = ("decode", "decode_new_row", "begin_final_lsn", "commit_end_lsn")


def implementation(which: str) -> Codec:
    if which == "pure":
        return codec.PURE
    return codec.compiled() or codec.PURE


@contextmanager
def bound(namespace: MutableMapping[str, Any], which: str) -> Iterator[Codec]:
    """Point the decoder names a test module uses at one implementation, restored afterwards."""
    impl = implementation(which)
    saved = {n: namespace[n] for n in NAMES if n in namespace}
    for n in saved:
        namespace[n] = getattr(impl, n)
    try:
        yield impl
    finally:
        namespace.update(saved)
