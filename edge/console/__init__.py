"""The inspector's live console: the http:// sink and its server, the page, and the strip of
recent findings.
"""
