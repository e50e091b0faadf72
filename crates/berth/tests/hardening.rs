//! The holes an outside attack found (issue 14), each with the test that
//! failed on the code before its fix, against the real binary.

mod common;

mod hardening {
    mod digests;
    mod lockout;
    mod mount;
    mod timeouts;
    mod uploads;
}
