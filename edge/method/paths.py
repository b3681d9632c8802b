"""The names of the refine paths a frame record can carry, and what each means for people.

A leaf with no imports: the console page and the run report show these meanings, and must not
load the model runtime or the refine stack to do it.
"""

SKIPPED_PATH = "skipped"   # the gate stayed shut (edge/method/gate.py): empty mask, no refinement
# What each path a frame record names means, for people: the console and the report show it.
PATH_MEANINGS = {
    "light": "k-means colour clusters vetted by the evidence, then a short dense CRF",
    "full": "the full dense CRF at reduced resolution",
    "none": "the model's evidence thresholded, no refinement",
    SKIPPED_PATH: "the model saw no corrosion, so no mask was made (the gate stayed shut)",
}
