"""Reading and checking what comes in: smear images (validated to (H, W, 3) uint8), smear files
and subject tables, and the cell table with its embedding matrix (schema, region features, files).

The bottom stage: imports only :mod:`napari_reddino.names` and :mod:`napari_reddino.progress`.
"""
