//! berth as a library: a validated [`Config`] becomes the application
//! ([`App::build`]): the metadata and blob backends it names, the registry,
//! the user directory, the token service and the audit log, served on one
//! router (the registry, the management API and, with the `ui` feature,
//! the web UI), and the background tasks of a serving node; `fsck`, and
//! `import` of a CNCF Distribution registry's storage on the same wiring.
//! The `berth` binary parses its command line and calls this; tests build
//! the same application in-process.

mod app;
mod backends;
pub mod cluster;
pub mod config;
mod fsck;
mod import;

pub use app::{App, Background, Serving};
pub use config::Config;
pub use fsck::fsck;
pub use import::{import, ImportArgs};
