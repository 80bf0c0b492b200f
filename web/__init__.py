"""Trellis web portal (built in its own issue) and the `trellis` command."""
