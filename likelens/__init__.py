"""LikeLens: tells which likes on a short-video platform are real.

The in-process API (``likelens.api``) is what the CLI, the tests and later the service call.
"""

__version__ = "0.1.0"
