"""What people put on their own pages: the SVG badge, BibTeX and CSL-JSON of a record."""
