"""The model layer: phase-type graphs, their construction, built-in models,
moments, rewards, simulation, observations and the libphase (cffi) glue.

Nothing here knows about inference, MPI, files or configs.
"""
