//! Realistic sample data: `idgraph demo` and the benchmark fixtures share this generator.

pub mod generate;
