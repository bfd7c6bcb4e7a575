"""Report: renders a run's records as Markdown, HTML, CSV and plots."""
