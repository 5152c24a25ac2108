"""The live review page (`vad ui`): cameras, recent events with their heatmaps, acknowledgements."""
