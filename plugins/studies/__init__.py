"""Study packages: one entry point each, registering every plugin one study needs.

The general-purpose built-ins (datasets, zoos, perturbations, metrics and
benchmarks of seed 001, which every suite can use) are the five
``builtin_*`` entry points of :mod:`simbench_plugins`.  Each further study
is one entry point here, so ``SIMBENCH_BLOCK_PLUGINS=builtin_galaxy`` removes
that whole study and nothing else:

* :mod:`.cosmology` -- seed 000: CAMELS-like fields, the cosmology CNN zoo, the simulation-suite shift;
* :mod:`.contamination` -- seed 004: feature-contamination data, zoo, background shift and benchmark;
* :mod:`.galaxy` -- seed 002: galaxy morphology data, zoo and the survey-transfer benchmark;
* :mod:`.memorisation` -- seed 003 §3.1: the generalising / memorising / untrained CNN zoo and the
  ``early_layers`` benchmark.

Only light modules are imported (classes and parameters): listing plugins must not import torch.
"""
