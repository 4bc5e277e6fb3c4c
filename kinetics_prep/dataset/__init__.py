"""The dataset's facts (clips, names, annotation files, label maps) and subsets of them."""
