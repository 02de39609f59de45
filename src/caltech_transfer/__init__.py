"""Transfer learning on Caltech-101: data stages, one training engine, evaluation and plots."""
