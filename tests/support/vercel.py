"""Placeholder: fixtures arrive with the provider."""
