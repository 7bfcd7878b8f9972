"""The output wing: pictures (frames, strips), export writers and galleries. The top of the
engine: it may use every other wing, and none uses it."""
