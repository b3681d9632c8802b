"""Heatmap -> mask refinement paths.

    registry.py      the mode names (a leaf: config.py and the CLI read it)
    factory.py       `make_refiner(mode, ...)`: the refiner a mode names
    base.py          the Refiner interface, the evidence -> probability mapping, `none`
    light.py         k-means colour clusters vetted by the evidence, then a short dense CRF
    full.py          the full dense CRF at reduced resolution
    auto.py          per frame, full when it fits the budget, else light
    crf.py, colour_prior.py   what the paths share
    worker.py        the GIL-holding paths in a worker process

This file imports nothing, so that reading the registry loads nothing else.
"""
