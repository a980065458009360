"""``python -m training.eval -h`` names every subcommand main() dispatches."""

from __future__ import annotations

import pytest

from training.eval.harness import main


def test_help_lists_every_make_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["-h"])
    text = " ".join(capsys.readouterr().out.split())
    for command in ("make-synthetic", "make-bccd", "make-chula"):
        assert command in text, command
