"""The three conditions of seed 003 §3.1 (values of the ``memorisation`` zoo's ``condition`` factor).

A module of its own so that the zoo's light class module and its torch implementation both read them
without importing each other."""

GENERALISING, MEMORISING, RANDOM = "generalising", "memorising", "random"
CONDITIONS: tuple[str, ...] = (GENERALISING, MEMORISING, RANDOM)
