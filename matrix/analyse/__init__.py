"""Analyse: turns a trial's records into knees, summaries and the workshop's findings."""
