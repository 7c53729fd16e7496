"""Finding papers: full-text search, and the index page's paging."""
