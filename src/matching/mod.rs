//! Probabilistic matching of people without a shared identifier, Fellegi-Sunter style:
//! blocking keys ([`blocking`]), graded field comparisons ([`compare`]), the model with its
//! unsupervised estimation ([`model`]: `u` from random pairs, `m` and the prior by EM),
//! training on a whole set of records and the batch linker with its cluster guard
//! ([`batch`], `idgraph eval --batch`), and `idgraph train` over a store ([`train`]).
//! The real-time use inside the resolver is `resolve::probable`.

pub mod batch;
pub mod blocking;
pub mod compare;
pub mod frequency;
pub mod model;
pub mod train;
