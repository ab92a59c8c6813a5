"""Analyses of recorded datasets: plain xarray in, plain xarray out; no torch.
"""
