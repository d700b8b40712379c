"""The architectures, one per module; `config` builds one by name."""
