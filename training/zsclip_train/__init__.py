"""zsclip_train: builds Russian two-tower models (the offline default recipe, and LiT training on query-image pairs)."""
