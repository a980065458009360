"""napari-reddino: explore red-blood-cell smears through a RedDino foundation model."""

__version__ = "0.1.0"
