"""How people and crawlers find what is here: the Atom feed, sitemap.xml and robots.txt."""
