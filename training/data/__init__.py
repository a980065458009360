"""Training data: smear patches and cell banks, RedDino augmentations, iBOT masks, the loader."""
