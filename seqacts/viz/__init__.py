"""Figures and the HTML report, built on ``seqacts.analysis``.
"""
