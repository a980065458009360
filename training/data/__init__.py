"""Training data: smear patches, RedDino augmentations, and the sharded streaming loader."""
