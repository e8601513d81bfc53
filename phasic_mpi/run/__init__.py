"""The run layer: the one loop that drives every algorithm (progress,
checkpoints, signals, output) and the launch checks."""
