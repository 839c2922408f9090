"""Random-weight stand-ins built with the real classes and saved in the real formats: tiny models for tests and the demo, full-size architectures for timing and memory."""
