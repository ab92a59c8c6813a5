"""seqacts: look inside recurrent sequence models."""
