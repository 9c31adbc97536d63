"""visionfm.ops: attention dispatch (``attention``), deformable attention, box and point ops.

Import the submodule you need, e.g. ``from visionfm.ops.attention import attention``.
This package imports nothing itself, so importing one op never pulls in the others
(or optional dependencies such as xformers).
"""
