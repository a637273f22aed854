"""Super-resolution: the RRDB generator, its weights, and the engine that runs it on face crops."""
