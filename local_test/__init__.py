"""The laptop-side local workflow: scripts that train and serve the image on this machine, and the sample data
generator (make_sample_data) that tests and bench/ import."""
