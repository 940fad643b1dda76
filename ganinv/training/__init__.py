"""Training loops for the small networks of the embedded world."""
