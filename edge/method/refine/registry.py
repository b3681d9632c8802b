"""The refine modes by name: a leaf that imports nothing, so config.py and the CLI can offer and
check `--refine` / `refine.mode` without loading OpenCV, the CRF or the worker.

Each name is a Refiner subclass's `name`; edge/method/refine/factory.py maps the names to the
classes and checks at import that the two agree. A new path is a new Refiner subclass, its name
here, and its class in the factory's list.
"""

REFINE_MODES = ("none", "light", "full", "auto")
