//! icmp prober (being built).
