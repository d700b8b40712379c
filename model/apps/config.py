"""What the applications show unless asked otherwise (light: serve's flags derive from it)."""

KAGGLE_TOP_K = 20  # the Kaggle submission format: 20 "label confidence" pairs per video
LABELS_PER_CLIP = 20  # classify and serve: labels shown per clip unless asked otherwise
