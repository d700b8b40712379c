"""Training and evaluation on features from any data source."""
