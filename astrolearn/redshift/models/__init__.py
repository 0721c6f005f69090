"""Shipped redshift-reliability classifiers: ``<name>.json`` (metadata) and ``<name>.pt`` (weights).

See ``models/README.md`` for how each was trained.
"""
