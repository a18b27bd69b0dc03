"""Cost analysis of detectors: MACs per op and module, latency, peak memory, data flow."""
