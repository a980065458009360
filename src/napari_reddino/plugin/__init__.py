"""napari-aware, Qt-free: napari layer data from a cell table, the session shared by the docks,
the npe2 reader and writers, and the sample data. May import the core stages and ``runs``.
"""
