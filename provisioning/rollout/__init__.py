"""Staged fleet rollouts: one job to many devices in waves, with an abort threshold, resumable."""
