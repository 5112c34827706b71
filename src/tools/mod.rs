//! The commands built on the simulator: `doctor`, `scenario`/`demo`, `triage`, and the
//! report printed for a person.

pub mod doctor;
pub(crate) mod report;
pub mod scenario;
pub mod triage;
