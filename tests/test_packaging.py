"""The package metadata builds without deprecation warnings."""

from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_license_is_an_spdx_string_with_a_setuptools_that_reads_it() -> None:
    project = tomllib.loads(PYPROJECT.read_text())
    assert project["project"]["license"] == "MIT"  # a TOML table is deprecated
    assert project["build-system"]["requires"] == ["setuptools>=77"]  # PEP 639 support
