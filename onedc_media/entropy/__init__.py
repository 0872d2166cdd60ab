"""The bit-exact entropy layer: everything that decides a symbol or a probability table.

These modules compute in integers (or in fixed point whose integer twin is exact), so a
packet gives the same symbols on any CPU, thread count, batch size and on CUDA (DESIGN
invariant 2; the golden bitstreams in ``tests/golden/onedc`` prove it)::

    z indices --fsq--> fixed-length bits                   (no probability model)
    z --parsing--> hyper features --> per-stage table index and mean for y
    y symbols --tables + coder--> rANS words                (constriction)

- :mod:`~onedc_media.entropy.fsq`: finite scalar quantisation of ``z`` and its raw bits.
- :mod:`~onedc_media.entropy.fixedpoint`: fixed-point convolutions with an exact twin.
- :mod:`~onedc_media.entropy.parsing`: the parsing model (hyper-decoder, 4-part spatial
  context, gains) in integers.
- :mod:`~onedc_media.entropy.tables`: the Gaussian tables and the rule that picks one.
- :mod:`~onedc_media.entropy.coder`: rANS over those tables.
"""
