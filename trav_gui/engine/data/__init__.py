"""The data wing: the data-set registry (class names, shipped test sets, training data) and the
preprocessing of drawings into model inputs."""
