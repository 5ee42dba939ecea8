"""Producers: synthetic sensor fleets and dataset replays that feed readings and labels."""
