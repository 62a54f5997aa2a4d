"""Serving: codecs (content types), predictor (torch; load once, batch, predict), app (Flask routes)."""
