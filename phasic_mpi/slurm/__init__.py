"""SLURM batch scripts for runs and studies."""
