"""The camera side of keyframe-escrow, and the `escrow` command line."""
