"""Files: run files (HDF5, ArviZ/netCDF layout), observation files and HDF5
helpers. Reading a file never imports or runs user code."""
