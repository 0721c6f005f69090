"""Running astrolearn on a SLURM cluster: ``astrolearn submit`` and what jobs read of SLURM (see :mod:`.slurm`)."""
