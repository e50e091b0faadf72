//! Content digests (`algorithm:hex`) and a SHA-256 whose running state can be
//! saved and restored, so an upload can continue on another node or after a
//! restart without re-reading the bytes already received.

use sha2::Digest as _;
use std::fmt;
use std::str::FromStr;

/// A validated content digest. Only `sha256` and `sha512` are accepted, with
/// lowercase hex of the right length, as the image spec registers them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestError {
    Malformed,
    UnsupportedAlgorithm,
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::Malformed => f.write_str("malformed digest"),
            DigestError::UnsupportedAlgorithm => f.write_str("unsupported digest algorithm"),
        }
    }
}

impl std::error::Error for DigestError {}

impl Digest {
    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map(|(a, _)| a).unwrap_or("")
    }

    pub fn encoded(&self) -> &str {
        self.0.split_once(':').map(|(_, e)| e).unwrap_or("")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_sha256(&self) -> bool {
        self.algorithm() == "sha256"
    }

    /// Digest of a byte slice held in memory, with this digest's algorithm.
    pub fn matches(&self, data: &[u8]) -> bool {
        match self.algorithm() {
            "sha256" => Digest::sha256_of(data) == *self,
            "sha512" => Digest::sha512_of(data) == *self,
            _ => false,
        }
    }

    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex(&sha2::Sha256::digest(data))))
    }

    pub fn sha512_of(data: &[u8]) -> Digest {
        Digest(format!("sha512:{}", hex(&sha2::Sha512::digest(data))))
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, encoded) = s.split_once(':').ok_or(DigestError::Malformed)?;
        let len = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            a if !a.is_empty()
                && a.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b)
                }) =>
            {
                return Err(DigestError::UnsupportedAlgorithm)
            }
            _ => return Err(DigestError::Malformed),
        };
        if encoded.len() != len
            || !encoded
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::Malformed);
        }
        Ok(Digest(s.to_owned()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// Lowercase or uppercase hex to bytes; `None` for anything else.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SHA-256 whose state is plain data: eight words, the bytes of a partial
/// block, and the length so far. Compression uses `sha2::compress256` (0.11),
/// which picks SHA-NI at run time.
#[derive(Clone, PartialEq, Eq)]
pub struct Sha256State {
    h: [u32; 8],
    pending: Vec<u8>,
    total: u64,
}

impl Default for Sha256State {
    fn default() -> Self {
        Sha256State {
            h: SHA256_IV,
            pending: Vec::with_capacity(64),
            total: 0,
        }
    }
}

impl fmt::Debug for Sha256State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256State({} bytes)", self.total)
    }
}

impl Sha256State {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < 64 {
                return;
            }
            compress_blocks(&mut self.h, &self.pending);
            self.pending.clear();
        }
        let whole = data.len() / 64 * 64;
        if whole > 0 {
            compress_blocks(&mut self.h, &data[..whole]);
        }
        self.pending.extend_from_slice(&data[whole..]);
    }

    pub fn finalize(&self) -> Digest {
        let mut h = self.h;
        let mut tail = self.pending.clone();
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&(self.total.wrapping_mul(8)).to_be_bytes());
        compress_blocks(&mut h, &tail);
        let mut out = [0u8; 32];
        for (i, word) in h.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
        }
        Digest(format!("sha256:{}", hex(&out)))
    }

    /// A compact hex text of the state, to be stored with an upload session.
    pub fn to_hex(&self) -> String {
        let mut bytes = Vec::with_capacity(40 + self.pending.len());
        for w in self.h {
            bytes.extend_from_slice(&w.to_be_bytes());
        }
        bytes.extend_from_slice(&self.total.to_be_bytes());
        bytes.extend_from_slice(&self.pending);
        hex(&bytes)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = unhex(s)?;
        if bytes.len() < 40 || bytes.len() >= 40 + 64 {
            return None;
        }
        let mut h = [0u32; 8];
        for (i, w) in h.iter_mut().enumerate() {
            *w = u32::from_be_bytes(bytes[i * 4..i * 4 + 4].try_into().ok()?);
        }
        let total = u64::from_be_bytes(bytes[32..40].try_into().ok()?);
        let pending = bytes[40..].to_vec();
        if total % 64 != pending.len() as u64 {
            return None;
        }
        Some(Sha256State { h, pending, total })
    }
}

/// A running hash with the algorithm of a digest, for whoever reads stored
/// content back and checks it (fsck): content pushed by a `sha512:` digest
/// must be checked with SHA-512, never taken for corrupt by SHA-256.
#[derive(Clone, Debug)]
pub struct Hasher(Running);

#[derive(Clone, Debug)]
enum Running {
    Sha256(Sha256State),
    Sha512(sha2::Sha512),
}

impl Digest {
    /// A running hash with this digest's algorithm.
    pub fn hasher(&self) -> Hasher {
        // A `Digest` is only ever sha256 or sha512: parsing refuses others.
        Hasher(if self.algorithm() == "sha512" {
            Running::Sha512(sha2::Sha512::new())
        } else {
            Running::Sha256(Sha256State::new())
        })
    }
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Running::Sha256(h) => h.update(data),
            Running::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything given to [`Hasher::update`].
    pub fn finalize(self) -> Digest {
        match self.0 {
            Running::Sha256(h) => h.finalize(),
            Running::Sha512(h) => Digest(format!("sha512:{}", hex(&h.finalize()))),
        }
    }
}

/// Compresses whole 64-byte blocks in one call, in place: the SHA-NI path
/// runs over the full run of blocks, and no byte is copied first.
fn compress_blocks(h: &mut [u32; 8], data: &[u8]) {
    let (blocks, rest) = data.as_chunks::<64>();
    debug_assert!(rest.is_empty());
    sha2_blocks::block_api::compress256(h, blocks);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_invalid() {
        let d = Digest::sha256_of(b"abc");
        assert_eq!(
            d.as_str(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
        assert_eq!("sha256:abc".parse::<Digest>(), Err(DigestError::Malformed));
        assert_eq!(
            "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
                .parse::<Digest>(),
            Err(DigestError::Malformed)
        );
        assert_eq!(
            "md5:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm)
        );
        assert_eq!("nocolon".parse::<Digest>(), Err(DigestError::Malformed));
        assert!(d.matches(b"abc"));
        assert!(!d.matches(b"abd"));
        assert!(Digest::sha512_of(b"x").matches(b"x"));
    }

    #[test]
    fn resumable_state_matches_sha2_for_every_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 % 251) as u8).collect();
        for split in [0usize, 1, 55, 56, 63, 64, 65, 127, 128, 500, 999, 1000] {
            let mut s = Sha256State::new();
            s.update(&data[..split]);
            let restored = Sha256State::from_hex(&s.to_hex()).unwrap();
            assert_eq!(restored, s);
            let mut s = restored;
            s.update(&data[split..]);
            assert_eq!(s.finalize(), Digest::sha256_of(&data), "split at {split}");
            assert_eq!(s.len(), 1000);
        }
        assert_eq!(Sha256State::new().finalize(), Digest::sha256_of(b""));
    }

    #[test]
    fn long_input_in_uneven_pieces_matches_one_shot_hash() {
        let data: Vec<u8> = (0..(3 << 20) + 37u32)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        let mut s = Sha256State::new();
        let mut rest = &data[..];
        for len in [1usize, 63, 64, 65, 4096, 1 << 20, 100_001].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*len).min(rest.len()));
            s.update(piece);
            rest = tail;
        }
        assert_eq!(s.finalize(), Digest::sha256_of(&data));
    }

    #[test]
    fn a_hasher_uses_the_algorithm_of_its_digest() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 251) as u8).collect();
        for digest in [Digest::sha256_of(&data), Digest::sha512_of(&data)] {
            let mut h = digest.hasher();
            for piece in data.chunks(4099) {
                h.update(piece);
            }
            assert_eq!(h.finalize(), digest);
        }
    }

    #[test]
    fn rejects_corrupt_state() {
        assert!(Sha256State::from_hex("zz").is_none());
        assert!(Sha256State::from_hex(&"00".repeat(41)).is_none());
    }
}
