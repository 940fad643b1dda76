"""Networks other than generators: the attribute classifier (`attributes`)."""
