"""prhlib: helpers for *The Platonic Representation Hypothesis, hands-on*.

Modules (import them by name, e.g. ``from prhlib import metrics``):

``config``     profile (small/full), seed, device, cache folder
``metrics``    alignment metrics, chance levels, permutation calibration
``world``      the toy world with a known hidden scene Z
``zoo``        small image/text models for the toy world and their training loops
``models``     registry of real encoders per profile
``features``   batched feature extraction with the paper's pooling, cached on disk
``data``       image--caption pairs (tuxpaint, emoji, toy world; WIT-1024 in the full profile)
``stitching``  model stitching and relative representations
``colors``     the colour case study: named colours, CIELAB, PMI, MDS, Kabsch--Umeyama
``plotting``   the book's figures
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
