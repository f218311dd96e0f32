"""asyncbridge's pytest plugin (registered through the pytest11 entry point).

The blocking detector fixtures and options land with the detector issue.
"""
