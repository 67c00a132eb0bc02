"""Synthetic H&E scenes with known mitosis truth.

``cells``: the truth table (latent mitosis score m per cell); ``scene``: sampling cells;
``render``: Beer-Lambert H&E rendering; ``generate``: patches, tiles and whole slides;
``labelling``: the labelling processes of the three papers from the same truth.
"""
