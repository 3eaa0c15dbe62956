"""Data: readers for real scene formats (the data issue grows this into Scene readers)."""
