//! The holes an outside attack found (issue 14), each with the test that
//! failed on the code before its fix, against the real binary.
//!
//! Layout, one module per hole:
//!
//! - `mount`: a mount's `from` is checked and used as one parsed value;
//!   repeated or encoded parameters cannot split the check from the use;
//! - `login_redirect`: `next=` after login stays on this origin;
//! - `timeouts`: slow, idle and stalled clients are let go;
//! - `uploads`: upload bytes count toward quotas as they arrive, and
//!   open upload sessions are bounded;
//! - `ui_sessions`: a UI session ends with the account version it began in;
//! - `mgmt_tokens`: registry tokens do not open the management API;
//! - `lockout`: wrong passwords from one address do not lock out others;
//! - `digests`: sha512 is handled the same by every reader;
//! - `project_names`: a private project's existence does not leak.

mod common;

mod hardening {
    mod digests;
    mod lockout;
    mod login_redirect;
    mod mgmt_tokens;
    mod mount;
    mod project_names;
    mod timeouts;
    mod ui_sessions;
    mod uploads;
}
