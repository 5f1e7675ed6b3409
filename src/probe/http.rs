//! http prober (being built).
