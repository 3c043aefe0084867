//! Processes: serve, concurrent once, the demo.
