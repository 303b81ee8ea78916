"""The suites shipped with simbench, installed as the package data ``simbench_suites``.

Only the ``*.toml`` files matter: ``simbench run quick`` and ``simbench list
suites`` find them here wherever simbench is installed (see ``simbench.api``).
"""
