"""Where bytes land: atomic commits, paths, the frame-directory format, packed clips, readers."""
