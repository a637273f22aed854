"""Degradations learned from a camera: blur kernels, noise, compression, and the pool file."""
