"""Timing, memory and quality measurement of artifacts, and readable reports."""
