from setuptools import setup
setup(cffi_modules=["libphase/build_cffi.py:ffibuilder",
                    "libphase/build_exitguard.py:ffibuilder"])
