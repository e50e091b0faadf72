//! Password hashing with argon2id (PHC strings carry their own salt and
//! parameters, so they can be raised later without breaking old hashes).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand_core::OsRng;

pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing password: {e}"))
}

/// Constant-time verification (argon2 compares the outputs in constant
/// time). A malformed or empty hash never verifies.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn roundtrip() {
        let h = super::hash("s3cret!").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("s3cret!", &h));
        assert!(!super::verify("s3cret", &h));
        assert!(!super::verify("s3cret!", ""));
    }
}
