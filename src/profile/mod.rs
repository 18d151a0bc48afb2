//! Golden profiles and the views built on the identity graph: survivorship, households,
//! devices, graph neighbourhood, explain paths and history, and the subject access document.

pub mod golden;
pub mod household;
pub mod subject_access;
pub mod survivorship;
pub mod views;
