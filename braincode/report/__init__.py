"""Reports: HTML pages (Jinja2 templates) and plots."""
