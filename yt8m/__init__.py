"""What both stages share: the representation, the shard store, the official formats.

`extract` (raw video -> features) and `model` (features -> labels) both import
this package; it imports neither of them.
"""
