"""What users type that a CLI should take: ``--version`` and ``-q`` after the subcommand."""

from __future__ import annotations

import subprocess
import sys

import pytest

import napari_reddino
from napari_reddino.cli.main import build_parser, main


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"napari-reddino {napari_reddino.__version__}"


def test_the_installed_command_knows_its_version():
    done = subprocess.run([sys.executable, "-m", "napari_reddino", "--version"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert napari_reddino.__version__ in done.stdout


@pytest.mark.parametrize("argv, quiet", [
    (["report", "RUN", "-q"], True),
    (["-q", "report", "RUN"], True),
    (["report", "RUN", "--quiet"], True),
    (["report", "RUN"], False),
    (["project", "RUN", "-q"], True),
    (["propagate", "RUN", "--reference", "REF", "-q"], True),
])
def test_quiet_is_accepted_before_and_after_the_subcommand(argv, quiet):
    assert build_parser().parse_args(argv).quiet is quiet


def test_every_subcommand_takes_quiet():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        helps = sub.choices[name].format_help()
        assert "--quiet" in helps, name
