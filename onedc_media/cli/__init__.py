"""The ``onedc-media`` command line: a thin shell over the library API.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and
``run(args) -> int``. The library never prints or exits; this package owns output.
"""
