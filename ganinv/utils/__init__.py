"""Small helpers shared across ganinv (images, ...)."""
