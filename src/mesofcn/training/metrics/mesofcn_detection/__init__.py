"""The `mesofcn_detection` evaluate module (its script is `mesofcn_detection.py` beside this file)."""
