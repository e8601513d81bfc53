"""Post-analysis of run files: posterior tables and diagnostics."""
