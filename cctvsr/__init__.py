"""cctvsr: the clearest honest face images out of real surveillance video."""

__version__ = "0.1.0"
