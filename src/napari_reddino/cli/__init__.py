"""The ``napari-reddino`` command line: the argument parser (:mod:`.main`), the commands over the
core (:mod:`.commands`), the demo (:mod:`.demo`) and the terminal progress bar (:mod:`.console`).
"""

from napari_reddino.cli.main import main

__all__ = ["main"]
