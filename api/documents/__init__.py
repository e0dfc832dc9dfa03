"""Trusted documents: the operations a partner registered from its build's manifest, run by id."""
