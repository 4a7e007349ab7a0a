"""Screens of the staff console."""
