"""cffi (API mode) builder for ``phasic_mpi._exitguard``: the exit() guard of a
run (``libphase/exitguard/exit_guard.c``; not part of libphase, which keeps no
global state). Used by setup.py like ``build_cffi.py``."""

import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "exitguard")


def _rel(path):
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


ffibuilder = FFI()
ffibuilder.cdef("""
int exit_guard_arm(int rank, void *mpi_abort, intptr_t comm);
void exit_guard_disarm(void);
int exit_guard_is_armed(void);
""")
ffibuilder.set_source(
    "phasic_mpi._exitguard",
    '#include "exit_guard.h"\n',
    sources=[_rel(os.path.join(SRC, "exit_guard.c"))],
    include_dirs=[_rel(SRC)],
    depends=[_rel(os.path.join(SRC, "exit_guard.h"))],
    extra_compile_args=["-std=c11", "-O2", "-Wall", "-Wextra"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
