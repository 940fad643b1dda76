"""Datasets: the procedural-faces world (`procedural_faces`)."""
