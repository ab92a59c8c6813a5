"""``seqacts view``: an interactive explorer of recordings (Panel + HoloViews on Bokeh)."""
