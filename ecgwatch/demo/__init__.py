"""The demo, the watch simulator and the brokers they (and the tests and benchmarks) start."""
