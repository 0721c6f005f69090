"""Shipped redshift-reliability classifiers: ``<name>.json`` (metadata) and ``<name>.pt`` (weights).

See ``models/README_redshift.md`` for how each was trained.
"""
