"""Compare two run files dataset by dataset, bit by bit: compare_h5.py A.h5 B.h5.

Every dataset in either file must exist in both with the same dtype, shape
and bytes (NaNs compare equal when their bits do). Attributes are not
compared (they hold paths and timings). Exit status 1 on any difference.
"""

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


def main(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        da, db = datasets(fa), datasets(fb)
    bad = []
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
    print(f"{a} == {b}: {n} datasets identical")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
