"""Provision an open image: packages (cached role base), accounts, services, rendered files."""
