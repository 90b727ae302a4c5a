"""ssmvit: S4D vs ViT on MedMNIST, from raw data to the numbers a paper prints.

One module per concern:
  errors    the one-line user-facing error type
  fileio    atomic writes and safe loading of untrusted files
  config    the study configuration: defaults, loading, validation
  paths     every file path the pipeline reads or writes, built in one place
  datasets  MedMNIST download, verification, preprocessing, raster scan
  models    ViT and S4D, and a registry from name to builder
  training  one training run, resumable and deterministic
  metrics   ACC/AUC as medmnist's Evaluator computes them, F1, confusion matrix
  evaluate  test-split evaluation of a trained run
"""

__version__ = "0.2.0"
