"""Compare two run files dataset by dataset, bit by bit.

    compare_h5.py A.h5 B.h5 [--attr NAME=VALUE ...]

Every dataset in either file must exist in both with the same dtype, shape
and bytes (NaNs compare equal when their bits do). Attributes are not
compared (they hold paths and timings); ``--attr NAME=VALUE`` checks a root
attribute of A instead (e.g. ``n_ranks=2``: the run had several tasks,
``resumed=true``: it continued from a checkpoint). Exit status 1 on any
difference.
"""

import argparse
import sys

import h5py
import numpy as np

# datasets that hold wall-clock times (differ between any two runs)
SKIP_SUFFIXES = ("elapsed", "wall_time", "timing", "time_s")


def datasets(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj[()])
                 if isinstance(obj, h5py.Dataset) else None)
    return out


def attr_text(value):
    """A root attribute as text: strings as they are, numbers as str()."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return str(value.item())
    return str(value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE",
                        help="a root attribute A must have (repeatable)")
    args = parser.parse_args(argv)
    a, b = args.a, args.b
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        da, db = datasets(fa), datasets(fb)
        attrs = {name: attr_text(fa.attrs[name]) for name in fa.attrs}
    bad = []
    for spec in args.attr:
        name, _, want = spec.partition("=")
        got = attrs.get(name)
        if got != want:
            bad.append(f"attribute {name}: {got!r} in {a}, expected {want!r}")
    for name in sorted(set(da) | set(db)):
        if name.rsplit("/", 1)[-1].endswith(SKIP_SUFFIXES):
            continue
        if name not in da or name not in db:
            bad.append(f"{name}: only in {a if name in da else b}")
            continue
        x, y = np.asarray(da[name]), np.asarray(db[name])
        if x.dtype != y.dtype or x.shape != y.shape:
            bad.append(f"{name}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
        elif x.dtype.kind == "O":
            if x.tolist() != y.tolist():
                bad.append(f"{name}: values differ")
        elif x.tobytes() != y.tobytes():
            bad.append(f"{name}: bits differ")
    n = len(set(da) | set(db))
    if bad:
        print(f"{a} != {b}:\n  " + "\n  ".join(bad))
        return 1
    checked = f"; {', '.join(args.attr)}" if args.attr else ""
    print(f"{a} == {b}: {n} datasets identical{checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
