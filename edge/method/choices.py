"""The method's named choices, written once: TFLite runtimes and quantisation modes.

A leaf (it imports nothing), so config.py, `--help` and converter/ read them without loading a
runtime. edge/method/model.py maps each runtime to the module that provides it.
"""

# In the order `auto` tries them.
RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
RUNTIME_CHOICES = ("auto", *RUNTIMES)
QUANT_MODES = ("float32", "float16", "dynamic", "int8")
