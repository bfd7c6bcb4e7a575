"""Trains the penguin classifiers and exports them (joblib pipelines + compiled .npz) to models/."""
