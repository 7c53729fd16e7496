"""A claim about the worker itself, for end-to-end tests: it runs in a second and needs no GPU."""
