"""Images and datasets on disk: reading images and masks, finding labelled folders, and the
synthetic scene generator. Imports nothing of edge but errors.
"""
