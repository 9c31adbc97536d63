"""visionfm.ops: attention dispatch (``attention``), deformable attention, box and point ops.

Point clouds (packed: ``coords (N, 3)`` + ``offsets (B,)`` cumulative ends, no padding):
``point_batch`` (offsets <-> batch index / lengths, input checks), ``point_sampling``
(farthest point sampling, kNN, ball query, 3-NN interpolation), ``point_grid`` (grid
sampling, z-order / Hilbert serialization, scatter pooling).

Import the submodule you need, e.g. ``from visionfm.ops.attention import attention``.
This package imports nothing itself, so importing one op never pulls in the others
(or optional dependencies such as xformers).
"""
