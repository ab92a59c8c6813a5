"""Storage: the netCDF file layer, streaming extraction, lazy reading, distributed extraction.
"""
