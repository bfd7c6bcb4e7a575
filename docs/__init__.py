"""The committed reports of real runs (quick-run/, workshop-run/) and the code that renders the
READMEs' figures from them, so that no README figure is typed by hand (python -m docs.render)."""
