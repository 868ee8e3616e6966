"""Reporting: what a detection run hands back to people: the JSON report, overlay videos and figures."""
