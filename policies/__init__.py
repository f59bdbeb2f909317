"""Retention and access policies and their validated model (issue 7)."""
