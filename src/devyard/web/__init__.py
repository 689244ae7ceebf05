"""The dashboard and login pages, server-rendered with Jinja2 and a little JavaScript."""
