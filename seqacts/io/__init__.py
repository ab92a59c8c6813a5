"""Storage: the netCDF file layer, streaming extraction, lazy reading, distributed extraction.
"""

import os

# Importing tensorflow (the Keras front end's tensorflow backend, or the user's own import) sets
# HDF5_PLUGIN_PATH=disable for the whole process and its children; netCDF4 then never points HDF5
# at its own filter plugins, and every zstd-compressed variable fails with "undefined filter".
# netCDF4 is first imported below this package: give it back its default (its plugins folder).
if os.environ.get("HDF5_PLUGIN_PATH") == "disable":
    del os.environ["HDF5_PLUGIN_PATH"]
