"""The method: the model (TFLite runtime, model card), the mask gate, the refine paths and
`Segmenter`, which runs one frame through them. Imports no source, output, loop or record.
"""
