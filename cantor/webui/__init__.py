"""``cantor webui``: the Gradio app (app.py) over its handlers (handlers.py), job queue (jobs.py),
path guard (sandbox.py), experiments (experiments.py), conversion and training work."""
