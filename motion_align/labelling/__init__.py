"""Preferences from people: the label store, the labelling web app and its API, and the export of labels as
preference pairs with their agreement statistics (docs/labelling.md)."""
