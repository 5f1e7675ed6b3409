//! tcp prober (being built).
