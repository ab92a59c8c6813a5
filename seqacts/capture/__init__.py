"""Recording: find recurrent layers, intercept their kernels, build the labeled dataset.

Never imports ``seqacts.io``, ``seqacts.analysis`` or ``seqacts.viz``.
"""
