"""``python -m napari_reddino``: the same command as ``napari-reddino``."""

# The guard matters: dask's worker processes are spawned, and spawn re-imports this module.
if __name__ == "__main__":
    from napari_reddino.cli.main import main

    raise SystemExit(main())
