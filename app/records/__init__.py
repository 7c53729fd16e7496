"""Records: registering papers, importing other registries' records, resolving names."""
