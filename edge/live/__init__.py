"""The live loop: the stage threads, the pipeline, the overlay drawn on each frame, and the
app that wires a source, the method, the outputs and the record into one run.
"""
