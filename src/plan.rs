//! Probe planning at scale: the pure planner ([`meshprobe_core::plan`]), the simulator
//! ([`meshprobe_diagnosis::simulate`]) and `meshprobe plan` ([`cmd`]).

pub mod cmd;
pub mod emulate;
pub mod faults;

pub use meshprobe_core::plan::*;
pub use meshprobe_diagnosis::simulate;
