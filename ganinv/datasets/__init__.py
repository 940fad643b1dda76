"""Datasets: the procedural-faces world (`procedural_faces`) and the decode policy for image files (`folder`)."""
