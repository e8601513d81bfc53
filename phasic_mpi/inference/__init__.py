"""The inference layer: priors, transforms, posteriors and the algorithms
(SVGD, parallel tempering) as pure steps over a state.

Communication goes through the communicator given to the algorithms; nothing
here reads or writes files.
"""
