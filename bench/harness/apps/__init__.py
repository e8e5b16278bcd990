"""Apps the systems under test run, each started as its own process."""
