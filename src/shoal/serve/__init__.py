"""The serving layer: `shoal serve` answers every production model of a workspace over HTTP.

`create_app(ws)` (in `shoal.serve.app`) builds the FastAPI application; importing this package is light.
"""
