"""Interpretable morphology per cell: size, shape, central pallor, stain, texture, inclusions.

The feature registry (names, families, units, definitions) is :mod:`.features`; the measuring
families live in :mod:`.shape` and :mod:`.stain`. May import ``io`` and ``segment``.
"""
