//! Golden profiles and the views built on the identity graph: survivorship, households,
//! devices, graph neighbourhood, explain paths and history.

pub mod golden;
pub mod household;
pub mod survivorship;
pub mod views;
