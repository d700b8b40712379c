"""Raw video -> YouTube-8M-equal features: decoding, Inception-v3, VGGish, PCA, shards."""
