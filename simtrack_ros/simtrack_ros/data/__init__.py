"""Data: sequence readers, annotation schema and pipeline, synthetic maritime scenes."""
