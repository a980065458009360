"""Many smears end to end: the per-smear pipeline with its done-marker, dask.distributed execution,
combining finished smears into one run folder, the run folder as AnnData (``cells.h5ad``) and the
HTML report. May import every core stage below it; never napari.
"""
