"""The runs wing: what a run was started with, its frames so far, its record (``run.json``) and
matching a record's models for replay."""
