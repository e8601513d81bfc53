"""Studies: grids of inferences (e.g. calibration checks) run as one MPI job."""
