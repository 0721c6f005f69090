"""Shipped redshift-reliability classifiers: one model directory per name (metadata, checkpoint, GBM baseline).

See ``models/README.md`` for how each was trained.
"""
