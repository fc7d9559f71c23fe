"""The committed fixtures are exactly what fixtures/make_fixtures.py writes."""

from __future__ import annotations

import subprocess
import sys

from tests.steps.steprunner import FIXTURES


def test_fixtures_regenerate_bit_for_bit(tmp_path):
    subprocess.run(
        [sys.executable, str(FIXTURES / "make_fixtures.py"), "--output-dir", str(tmp_path)],
        check=True,
        timeout=120,
    )
    for folder in ("letor", "bad"):
        committed = sorted(path.name for path in (FIXTURES / folder).iterdir())
        generated = sorted(path.name for path in (tmp_path / folder).iterdir())
        assert generated == committed, folder
        for name in committed:
            assert (tmp_path / folder / name).read_bytes() == (
                FIXTURES / folder / name
            ).read_bytes(), name
