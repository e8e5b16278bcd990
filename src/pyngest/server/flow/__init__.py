"""Flow control: what decides whether a run is created, and when and how fast it executes."""
