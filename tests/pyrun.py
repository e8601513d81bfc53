"""Run a snippet in a fresh interpreter that sees the tests' import path
(for checks of what importing or calling something pulls in, e.g. mpi4py)."""

import os
import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess:
    """``python -c code`` with this process's ``sys.path``; output captured as text."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
