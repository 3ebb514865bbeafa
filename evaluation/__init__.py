"""Measurement: probe texts, accuracy of the exported encoders, `semsearch verify`.

Imported lazily by the command line and never by the server.
"""
