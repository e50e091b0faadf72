//! The kit's harness of the real binary ([`berth_test_kit::server`]), bound
//! to the `berth` cargo built for these tests: `Server::start()` and the
//! rest run this crate's binary.

pub use berth_test_kit::server::*;

/// The `berth` binary of this package.
pub struct Berth;

impl Binary for Berth {
    const PATH: &'static str = env!("CARGO_BIN_EXE_berth");
}

/// A running `berth serve`, see [`berth_test_kit::server::Server`].
pub type Server = berth_test_kit::server::Server<Berth>;
