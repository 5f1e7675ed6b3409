//! The HTTP server loop shared by the agent and `meshprobe serve` (being built).
