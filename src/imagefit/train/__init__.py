"""Training: the run's phases, the loop and its callbacks.

Kept free of imports: ``imagefit/__init__.py`` imports this package before it binds
the function ``imagefit.train`` (the same name), and must stay free of torch.
Import the pieces from their modules (``imagefit.train.callbacks``, ``.loop``, ...).
"""
