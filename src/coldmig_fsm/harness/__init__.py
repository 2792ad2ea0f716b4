"""The test harness: scenario files, the differential check against Nova, the failure table."""
