//! Import of a CNCF Distribution (or Harbor) registry's storage: berth's
//! metadata is built for the repositories, manifests, tags and blobs of a
//! Distribution storage tree ([`Tree`], read on a filesystem or in a
//! bucket by the storage crate), through the same domain operations and
//! checks a push gets ([`crate::Registry`]).
//!
//! - Blobs are adopted where they lie when the registry's blob store holds
//!   them (berth configured on the Distribution's storage with the
//!   Distribution layout: no byte is copied), else streamed from the tree
//!   into the store and verified.
//! - Manifests are put by digest once their blobs and children are in the
//!   repository (children before parents), so referrers (`subject`) are
//!   recorded as a push records them; tags come last.
//! - Every step first asks whether berth has it, and each is one
//!   transaction: a second run changes nothing, and a run after a crash
//!   finishes the work without anything half-written having been visible.
//! - What the source holds that berth cannot serve (schema 1 manifests,
//!   links whose data is gone, invalid names) is skipped and reported, with
//!   why; only berth's own failures (storage, metadata) fail the import.

mod blobs;
mod manifests;
mod memory;
mod report;
mod run;
#[cfg(test)]
mod tests;
pub mod tree;

pub use memory::MemoryTree;
pub use report::{human_bytes, Counter, ImportReport, Progress, Tally};
pub use run::{ImportOptions, Importer, Projects};
pub use tree::{FileRead, Tree};
