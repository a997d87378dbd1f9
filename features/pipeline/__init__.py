"""One extraction run: plan the slides, load and crop them in workers, encode in batches, commit each bag."""
