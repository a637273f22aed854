"""Faces in frames: detection, tracking, selection of the best views, and cropping."""
