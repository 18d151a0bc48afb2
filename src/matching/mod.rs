//! Probabilistic matching of people without a shared identifier (issue 5), Fellegi-Sunter
//! style. So far: blocking keys ([`blocking`]), graded field comparisons ([`compare`]) and
//! the model with its unsupervised estimation ([`model`]: `u` from random pairs, `m` and
//! the prior by EM), and a batch linker over a whole file with the guard against chained
//! merges ([`batch`], used by `idgraph eval --probabilistic`). Not wired into the resolver
//! yet: the candidate index, probable edges and `idgraph train` are still to come.

pub mod batch;
pub mod blocking;
pub mod compare;
pub mod model;
