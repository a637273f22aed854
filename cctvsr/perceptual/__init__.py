"""Perceptual image metrics: networks whose distances track what people see, not pixel error."""
