"""Data: synthetic maritime scenes (the demo camera and tests)."""
