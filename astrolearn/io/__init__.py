"""Input/output shared by all domains: HDF5 shards of simulated data, FITS helpers."""
