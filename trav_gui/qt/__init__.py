"""The Qt shell: widgets, plots and the traversal worker. Only this package imports Qt."""
