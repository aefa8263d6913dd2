"""Host post-processing: grid decoding and NMS."""
