"""Files: images, weights files, videos and animated images, and atomic writes."""
