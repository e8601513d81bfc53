"""cffi (API mode) builder for the extension module ``phasic_mpi._libphase``.

Used by setup.py (``cffi_modules=["libphase/build_cffi.py:ffibuilder"]``),
which runs with the repository root as the working directory. Can also be
run directly (``python libphase/build_cffi.py``) to build the module into the
current directory.

The cdef is derived from libphase/include/phase.h at build time so that it can
never drift from the header: comments, the ``extern "C"`` guard and all
preprocessor lines are stripped, except object-like ``#define NAME VALUE``
constants, which are kept in a form cffi's cdef accepts.
"""

import glob
import os
import re

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HEADER = os.path.join(HERE, "include", "phase.h")


def _rel(path):
    """Path relative to the working directory when it lies below it (the
    normal case: setup.py runs from the repository root), else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith(os.pardir) else rel


_COMMENT_OR_STRING = re.compile(
    r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
    re.DOTALL,
)
_DEFINE = re.compile(r"#\s*define\s+([A-Za-z_]\w*)(\(?)(.*)$")
_INT_LITERAL = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|\d+)[uUlL]*")
_CPLUSPLUS_IF = re.compile(r"#\s*(?:ifdef\s+__cplusplus\b|if\s+defined\s*\(?\s*__cplusplus\b)")


def _strip_comments(text):
    def repl(m):
        s = m.group(0)
        if s.startswith("/*"):
            # keep line structure, a comment is whitespace
            return " " + "\n" * s.count("\n")
        if s.startswith("//"):
            return " "
        return s  # string or char literal

    return _COMMENT_OR_STRING.sub(repl, text)


def _define_for_cdef(name, value):
    """cffi's cdef only accepts '#define NAME <integer literal>' or
    '#define NAME ...' (value taken from the compiler in API mode)."""
    v = value.strip()
    while v.startswith("(") and v.endswith(")"):
        v = v[1:-1].strip()
    v = v.replace(" ", "")
    if _INT_LITERAL.fullmatch(v):
        return "#define %s %s" % (name, v)
    # anything else (floats, expressions, strings) — let the C compiler decide;
    # cffi only supports integer macros this way, so non-integer ones are
    # better declared as 'static const' in the header.
    return "#define %s ..." % name


def cdef_from_header(path=HEADER):
    """Return the cdef text for the declarations of the C header *path*."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    text = _strip_comments(text.replace("\\\n", " "))

    out = []
    depth = 0        # nesting depth of preprocessor conditionals
    skip_from = None  # depth at which an '#ifdef __cplusplus' block started
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            directive = re.match(r"#\s*(\w*)", s).group(1)
            if directive in ("if", "ifdef", "ifndef"):
                depth += 1
                if skip_from is None and _CPLUSPLUS_IF.match(s):
                    skip_from = depth
            elif directive == "endif":
                if skip_from == depth:
                    skip_from = None
                depth -= 1
            elif directive in ("else", "elif") and skip_from == depth:
                # '#else' of '#ifdef __cplusplus' is the C branch: keep it
                skip_from = None
            elif directive == "define" and skip_from is None:
                m = _DEFINE.match(s)
                # skip function-like macros and valueless ones (include guard)
                if m and not m.group(2) and m.group(3).strip():
                    out.append(_define_for_cdef(m.group(1), m.group(3)))
            # every other directive (#include, #pragma, #undef, ...) is dropped
            continue
        if skip_from is not None:
            continue
        # belt and braces: an unguarded extern "C" block
        s = re.sub(r'extern\s+"C"\s*\{', "", s)
        if s:
            out.append(s)
    cdef = "\n".join(out)
    if re.search(r'extern\s+"C"', cdef):
        raise RuntimeError("could not strip extern \"C\" from %s" % path)
    return cdef + "\n"


# Hot loops and functions start on 64-byte boundaries. Without this their
# placement follows the size of the code linked before them, and an unrelated
# edit elsewhere moved the sweep's inner loop across a 64-byte line: the
# random cyclic graph (d = 16) value went from 6.1 to 8.5 ms per θ on an AMD
# EPYC. Shifting the code by 0/16/32/48 bytes gave 6.1 / 6.8 / 8.5 / 6.1 ms
# (rabbits(10) and kingman(200) values up to 9 % apart), so bench-core ratios
# depended on the layout. With these flags every shift gives 6.1-6.2 ms, and
# no model is slower than the unaligned layouts' spread (rabbits(5): +1 % on
# the luckiest layout, inside the 4 % its layouts spanned). The flags only add
# padding: the instructions, hence every result, are bitwise the same. (The C
# tests keep their own flags: a sanitizer build, for correctness only.)
ALIGN_FLAGS = ["-falign-loops=64", "-falign-functions=64"]

ffibuilder = FFI()
ffibuilder.cdef(cdef_from_header())
ffibuilder.set_source(
    "phasic_mpi._libphase",
    '#include "phase.h"\n',
    sources=[_rel(p) for p in sorted(glob.glob(os.path.join(HERE, "src", "*.c")))],
    include_dirs=[_rel(os.path.join(HERE, "include"))],
    depends=[_rel(p) for p in sorted(glob.glob(os.path.join(HERE, "include", "*.h")))]
    + [_rel(p) for p in sorted(glob.glob(os.path.join(HERE, "src", "*.h")))]
    # this file too: a change of the flags below rebuilds the extension on `make build`
    + [_rel(os.path.join(HERE, "build_cffi.py"))],
    extra_compile_args=["-std=c11", "-O3", "-Wall", "-Wextra", *ALIGN_FLAGS],
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
