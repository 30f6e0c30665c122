"""Stores of committed group specs."""
