"""HTML pages for people: the record page and the index (Jinja2)."""
