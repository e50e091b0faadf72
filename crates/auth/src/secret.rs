//! Random secrets (robot secrets, generated admin passwords) and their
//! constant-time comparison.

use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// 32 random bytes as URL-safe text (43 characters).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn sha256_hex(secret: &str) -> String {
    berth_oci::digest::hex(&Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` hashes to `expected_hex`, compared in constant time.
pub fn matches(secret: &str, expected_hex: &str) -> bool {
    sha256_hex(secret)
        .as_bytes()
        .ct_eq(expected_hex.as_bytes())
        .into()
}
