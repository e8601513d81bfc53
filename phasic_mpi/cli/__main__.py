"""``python -m phasic_mpi.cli``: the ``phasic-mpi`` command."""

import sys

from phasic_mpi.cli.main import main

sys.exit(main())
