"""The coordinator (the ODA's linkage unit): servicers, handlers, the round lifecycle and its store."""
