"""``python -m napari_reddino``: the same command as ``napari-reddino``."""

from napari_reddino.cli import main

raise SystemExit(main())
