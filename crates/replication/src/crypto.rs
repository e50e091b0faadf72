//! Endpoint secrets at rest: sealed with ChaCha20-Poly1305 (`ring`) under a
//! 32-byte key from the configuration, as `v1:<base64(nonce | ciphertext |
//! tag)>`. The record's key (`repl:endpoint:<name>`) is the associated
//! data, so a sealed secret copied onto another endpoint does not open.

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;

/// The length of a key, in bytes.
pub const KEY_LEN: usize = 32;

/// The key that seals endpoint secrets.
pub struct SecretKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<SecretKey, String> {
        if bytes.len() != KEY_LEN {
            return Err(format!(
                "a replication secret key is {KEY_LEN} bytes, not {}",
                bytes.len()
            ));
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| "unusable replication secret key".to_owned())?;
        Ok(SecretKey {
            key: LessSafeKey::new(key),
        })
    }

    /// Reads a key file: 32 raw bytes, or 64 hex digits (a trailing newline
    /// allowed).
    pub fn read(path: &Path) -> Result<SecretKey, String> {
        let raw = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&raw);
        let trimmed = text.trim();
        if trimmed.len() == 2 * KEY_LEN && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
            let bytes: Vec<u8> = (0..KEY_LEN)
                .filter_map(|i| u8::from_str_radix(&trimmed[2 * i..2 * i + 2], 16).ok())
                .collect();
            return SecretKey::from_bytes(&bytes);
        }
        SecretKey::from_bytes(&raw).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads `path`, or creates it first (mode 0600, 64 hex digits of
    /// fresh randomness) when it does not exist: the embedded backend's
    /// default, as Harbor's `secretkey`.
    pub fn read_or_create(path: &Path) -> Result<SecretKey, String> {
        if !path.exists() {
            let mut bytes = [0u8; KEY_LEN];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| "no randomness for a replication secret key".to_owned())?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_private(path, format!("{hex}\n").as_bytes())?;
        }
        SecretKey::read(path)
    }

    /// Seals `plain` for the record `context`.
    pub fn seal(&self, context: &str, plain: &str) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no randomness for a nonce".to_owned())?;
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| "sealing a secret failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Opens what [`SecretKey::seal`] made for `context`; an error when it
    /// was made with another key, for another record, or altered.
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, String> {
        let fail = || "the endpoint's secret cannot be opened with this key".to_owned();
        let body = sealed.strip_prefix("v1:").ok_or_else(fail)?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| fail())?;
        if raw.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, rest) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| fail())?;
        String::from_utf8(plain.to_vec()).map_err(|_| fail())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    std::fs::write(path, data).map_err(|e| format!("writing {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes(&[b; KEY_LEN]).unwrap()
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let k = key(7);
        let sealed = k.seal("repl:endpoint:a", "s3cret").unwrap();
        assert!(!sealed.contains("s3cret"));
        assert_eq!(k.open("repl:endpoint:a", &sealed).unwrap(), "s3cret");
        // Another record, another key, or a flipped bit: refused.
        assert!(k.open("repl:endpoint:b", &sealed).is_err());
        assert!(key(8).open("repl:endpoint:a", &sealed).is_err());
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&sealed[3..])
            .unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            let mut bad = raw.clone();
            bad[i] ^= 1;
            let bad = format!(
                "v1:{}",
                base64::engine::general_purpose::STANDARD.encode(bad)
            );
            assert!(k.open("repl:endpoint:a", &bad).is_err(), "byte {i}");
        }
        assert!(k.open("repl:endpoint:a", "v1:").is_err());
        assert!(k.open("repl:endpoint:a", "plain").is_err());
        // Two seals of the same secret differ (fresh nonces).
        assert_ne!(sealed, k.seal("repl:endpoint:a", "s3cret").unwrap());
    }

    #[test]
    fn key_files() {
        let dir = std::env::temp_dir().join(format!("berth-repl-key-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("replication.key");
        let a = SecretKey::read_or_create(&path).unwrap();
        let sealed = a.seal("c", "x").unwrap();
        // The same file gives the same key.
        let b = SecretKey::read_or_create(&path).unwrap();
        assert_eq!(b.open("c", &sealed).unwrap(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, b"short").unwrap();
        assert!(SecretKey::read(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
