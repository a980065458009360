"""Backbone evaluation, RedDino Table-1 style: labeled cell sets, frozen-feature probes, the CLI.

``harness`` runs it (``python -m training.eval``), ``probe`` holds the classifiers, splits and
metrics, ``datasets`` reads labeled sets and makes synthetic ones, ``bccd`` / ``chula`` cut
the real ones. It needs only a backbone the plugin can load, not the trainer.
"""
