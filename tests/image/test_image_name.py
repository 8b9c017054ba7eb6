"""The image the build script makes is the one the chart and `phalanx install --render` run by default."""

from __future__ import annotations

import subprocess

import yaml

from phalanx import __version__
from phalanx.operator.install import InstallOptions
from tests.conftest import ROOT


def test_the_build_script_names_the_default_image_of_the_chart_and_of_install() -> None:
    named = subprocess.run(
        [str(ROOT / "scripts" / "build-image.sh"), "--print-name"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    chart = ROOT / "deploy" / "helm" / "phalanx"
    values = yaml.safe_load((chart / "values.yaml").read_text())["image"]
    app_version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    assert named == f"phalanx:{__version__}"
    assert named == InstallOptions().image
    assert named == f"{values['repository']}:{values['tag'] or app_version}"
