"""Classic codecs (JPEG, WebP, AVIF, HEVC-intra, PNG): the baselines."""
