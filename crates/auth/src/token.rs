//! Access tokens of the Docker registry token specification: ES256-signed
//! JWTs with a `kid`. Signing keys live in `Kv` (`authkey:<kid>`, the
//! active one named by `authkey-active`; see [`crate::keys`]), so every
//! node of a cluster signs with the same key and verifies any node's
//! tokens. Only ES256 is accepted: a token claiming `none` or any other
//! algorithm is rejected before anything else.

use crate::keys::{self, ACTIVE_SIGNING_KEY};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use berth_core::kv::{Kv, KvError, Txn};
use berth_core::{Clock, SystemClock};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Default tolerance for clocks of nodes that differ a little.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Verified tokens remembered at most (about 1 KiB each with their claims):
/// far above the live tokens of a busy registry (docker fetches one per
/// repository per push or pull, valid for `ttl_secs`).
pub const VERIFIED_CACHE_ENTRIES: usize = 16_384;

/// One `access` entry of the claims: what the token lets its bearer do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
    /// Set on an entry granted for a transparent mirror: `name` is the
    /// upstream's name, as a client of the mirror for this registry
    /// (`docker.io`, or containerd's `ns=`) asks for it, and the entry
    /// holds only for such requests, never for berth's own `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
}

impl AccessEntry {
    fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind
            && self.name == name
            && self.actions.iter().any(|x| x == action || x == "*")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<AccessEntry>,
}

impl Claims {
    /// Whether the token grants `action` on repository `name`.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access
            .iter()
            .any(|a| a.mirror.is_none() && a.grants(kind, name, action))
    }

    /// Whether the token grants `action` on the upstream's repository
    /// `name` through the mirror for `registry`.
    pub fn allows_mirrored(&self, registry: &str, name: &str, action: &str) -> bool {
        self.access
            .iter()
            .any(|a| a.mirror.as_deref() == Some(registry) && a.grants("repository", name, action))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature")]
    Signature,
    #[error("token expired or not yet valid")]
    Expired,
    #[error("token is for another service")]
    Audience,
    #[error(transparent)]
    Store(#[from] KvError),
}

#[derive(Serialize, Deserialize)]
struct KeyRecord {
    /// The private scalar, hex. Stored in `Kv` because any node must sign.
    private: String,
    created: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

pub struct TokenService {
    kv: Arc<dyn Kv>,
    pub issuer: String,
    pub service: String,
    pub ttl_secs: u64,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway_secs: u64,
    signing: RwLock<Option<(String, SigningKey)>>,
    verifying: RwLock<HashMap<String, VerifyingKey>>,
    /// Tokens whose signature, key, audience and issuer were checked,
    /// by the SHA-256 of the token: a token's time window is still checked
    /// on every use. Sound because a token has exactly one accepted
    /// spelling (low-S signatures only) and signing keys are never revoked
    /// while berth runs.
    verified: RwLock<HashMap<[u8; 32], Arc<Claims>>>,
    clock: Arc<dyn Clock>,
}

/// A key id derived from the public key, so equal keys have equal ids.
fn kid_of(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.to_encoded_point(true).as_bytes());
    berth_oci::digest::hex(&digest[..12])
}

impl TokenService {
    pub fn new(
        kv: Arc<dyn Kv>,
        issuer: impl Into<String>,
        service: impl Into<String>,
        ttl_secs: u64,
    ) -> Self {
        TokenService {
            kv,
            issuer: issuer.into(),
            service: service.into(),
            ttl_secs,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            signing: RwLock::new(None),
            verifying: RwLock::new(HashMap::new()),
            verified: RwLock::new(HashMap::new()),
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads time from `clock` instead of the system's (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The cluster's active signing key, created on first use. Two nodes
    /// racing to create it agree on one through a create-if-absent check.
    async fn signing_key(&self) -> Result<(String, SigningKey), TokenError> {
        if let Some(k) = self
            .signing
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(k);
        }
        loop {
            if let Some(active) = self.kv.get(ACTIVE_SIGNING_KEY).await? {
                let kid = String::from_utf8(active.value).map_err(|_| TokenError::UnknownKey)?;
                let key = self.load_private(&kid).await?;
                *self.signing.write().unwrap_or_else(|e| e.into_inner()) =
                    Some((kid.clone(), key.clone()));
                return Ok((kid, key));
            }
            let key = SigningKey::random(&mut OsRng);
            let kid = kid_of(key.verifying_key());
            let record = KeyRecord {
                private: berth_oci::digest::hex(&key.to_bytes()),
                created: self.clock.now(),
            };
            let txn = Txn::new()
                .if_unchanged(ACTIVE_SIGNING_KEY, None)
                .put(ACTIVE_SIGNING_KEY, kid.clone().into_bytes())
                .put(
                    keys::signing_key(&kid),
                    serde_json::to_vec(&record).unwrap_or_default(),
                );
            self.kv.commit(txn).await?;
        }
    }

    async fn load_private(&self, kid: &str) -> Result<SigningKey, TokenError> {
        let v = self
            .kv
            .get(&keys::signing_key(kid))
            .await?
            .ok_or(TokenError::UnknownKey)?;
        let record: KeyRecord =
            serde_json::from_slice(&v.value).map_err(|_| TokenError::UnknownKey)?;
        let bytes = berth_oci::digest::unhex(&record.private).ok_or(TokenError::UnknownKey)?;
        SigningKey::from_slice(&bytes).map_err(|_| TokenError::UnknownKey)
    }

    async fn verifying_key(&self, kid: &str) -> Result<VerifyingKey, TokenError> {
        if let Some(k) = self
            .verifying
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
        {
            return Ok(*k);
        }
        let key = *self.load_private(kid).await?.verifying_key();
        self.verifying
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kid.to_owned(), key);
        Ok(key)
    }

    /// Signs a token for `subject` granting `access`.
    pub async fn issue(
        &self,
        subject: &str,
        access: Vec<AccessEntry>,
    ) -> Result<(String, Claims), TokenError> {
        let (kid, key) = self.signing_key().await?;
        let t = self.clock.now();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.service.clone(),
            exp: t + self.ttl_secs,
            nbf: t.saturating_sub(self.leeway_secs),
            iat: t,
            jti: crate::secret::generate(),
            access,
        };
        let header = Header {
            alg: "ES256".into(),
            typ: Some("JWT".into()),
            kid: Some(kid),
        };
        let signing_input = format!(
            "{}.{}",
            B64.encode(serde_json::to_vec(&header).unwrap_or_default()),
            B64.encode(serde_json::to_vec(&claims).unwrap_or_default())
        );
        let sig: Signature = key.sign(signing_input.as_bytes());
        // Low-S form, the only one `verify` accepts (see there).
        let sig = sig.normalize_s().unwrap_or(sig);
        Ok((
            format!("{signing_input}.{}", B64.encode(sig.to_bytes())),
            claims,
        ))
    }

    /// Checks algorithm, key, signature, time and audience, in that order.
    /// A token verified before is found by its hash instead of checking
    /// its signature again (ES256 verification is most of a Bearer
    /// request's cost); its time window is checked every time.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let known = self
            .verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned();
        let claims = match known {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.verify_signed(token).await?);
                self.remember(hash, claims.clone());
                claims
            }
        };
        self.check_time(&claims)?;
        Ok((*claims).clone())
    }

    fn check_time(&self, claims: &Claims) -> Result<(), TokenError> {
        let t = self.clock.now();
        if claims.exp + self.leeway_secs < t || claims.nbf > t + self.leeway_secs {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// Keeps a verified token, making room first by forgetting expired
    /// ones (or, when all are live, all of them: they verify again).
    fn remember(&self, hash: [u8; 32], claims: Arc<Claims>) {
        let mut cache = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= VERIFIED_CACHE_ENTRIES {
            let t = self.clock.now();
            cache.retain(|_, c| c.exp + self.leeway_secs >= t);
            if cache.len() >= VERIFIED_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(hash, claims);
    }

    /// How many verified tokens are remembered.
    pub fn remembered(&self) -> usize {
        self.verified
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// The checks of [`TokenService::verify`] but time, from scratch.
    async fn verify_signed(&self, token: &str) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Header =
            serde_json::from_slice(&B64.decode(h).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if header.alg != "ES256" {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.verifying_key(&kid).await?;
        let sig_bytes = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let sig = Signature::from_slice(&sig_bytes).map_err(|_| TokenError::Signature)?;
        // Every ECDSA signature (r, s) has a twin (r, n - s) that verifies
        // too. Only the low-S one is accepted, so a token has exactly one
        // valid spelling (a revocation list or a cache keyed by the token
        // cannot be dodged by flipping s). Tokens are signed low-S.
        if sig.normalize_s().is_some() {
            return Err(TokenError::Signature);
        }
        key.verify(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&B64.decode(c).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        // Checked here too: an expired token is an error before audience.
        self.check_time(&claims)?;
        if claims.aud != self.service || claims.iss != self.issuer {
            return Err(TokenError::Audience);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::MemoryKv;

    fn service(kv: Arc<dyn Kv>) -> TokenService {
        TokenService::new(kv, "berth", "registry", 300)
    }

    #[tokio::test]
    async fn issued_tokens_verify_on_another_node() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new());
        let a = service(kv.clone());
        let b = service(kv);
        let access = vec![
            AccessEntry {
                kind: "repository".into(),
                name: "p/app".into(),
                actions: vec!["pull".into()],
                mirror: None,
            },
            AccessEntry {
                kind: "repository".into(),
                name: "library/alpine".into(),
                actions: vec!["pull".into()],
                mirror: Some("docker.io".into()),
            },
        ];
        let (token, _) = a.issue("alice", access).await.unwrap();
        let claims = b.verify(&token).await.unwrap();
        assert_eq!(claims.sub, "alice");
        assert!(claims.allows("repository", "p/app", "pull"));
        assert!(!claims.allows("repository", "p/app", "push"));
        assert!(!claims.allows("repository", "p/other", "pull"));
        // A mirror's entry holds for that mirror's requests only.
        assert!(claims.allows_mirrored("docker.io", "library/alpine", "pull"));
        assert!(!claims.allows_mirrored("quay.io", "library/alpine", "pull"));
        assert!(!claims.allows("repository", "library/alpine", "pull"));
        assert!(!claims.allows_mirrored("docker.io", "p/app", "pull"));
        // Both nodes sign with the same key.
        let (t2, _) = b.issue("bob", vec![]).await.unwrap();
        assert_eq!(t2.split('.').next(), token.split('.').next());
    }

    /// A remembered token is not verified again, but it still expires,
    /// and a token altered in any byte is not the remembered one.
    #[tokio::test]
    async fn remembered_tokens_still_expire() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new());
        let clock = Arc::new(berth_core::ManualClock::default());
        let mut s = service(kv).with_clock(clock.clone());
        s.leeway_secs = 0;
        let (token, _) = s.issue("alice", vec![]).await.unwrap();
        assert_eq!(s.verify(&token).await.unwrap().sub, "alice");
        assert_eq!(s.remembered(), 1);
        assert_eq!(s.verify(&token).await.unwrap().sub, "alice");
        assert_eq!(s.remembered(), 1);
        let mut altered = token.clone().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(s.verify(&altered).await.is_err());
        assert_eq!(s.remembered(), 1, "a forgery is not remembered");
        clock.advance(std::time::Duration::from_secs(301));
        assert!(matches!(s.verify(&token).await, Err(TokenError::Expired)));
    }

    #[tokio::test]
    async fn rejects_forgeries() {
        let kv: Arc<dyn Kv> = Arc::new(MemoryKv::new());
        let s = service(kv.clone());
        let (token, claims) = s.issue("alice", vec![]).await.unwrap();
        let parts: Vec<&str> = token.split('.').collect();

        // Tampered claims.
        let mut forged = claims.clone();
        forged.sub = "admin".into();
        let t = format!(
            "{}.{}.{}",
            parts[0],
            B64.encode(serde_json::to_vec(&forged).unwrap()),
            parts[2]
        );
        assert!(matches!(s.verify(&t).await, Err(TokenError::Signature)));

        // alg: none, no signature.
        let none = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let t = format!("{none}.{}.", parts[1]);
        assert!(matches!(s.verify(&t).await, Err(TokenError::Algorithm)));

        // HS256 with the public key as secret (the classic confusion).
        let hs = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        assert!(matches!(
            s.verify(&format!("{hs}.{}.{}", parts[1], parts[2])).await,
            Err(TokenError::Algorithm)
        ));

        // Another service's key.
        let other = service(Arc::new(MemoryKv::new()));
        let (t, _) = other.issue("alice", vec![]).await.unwrap();
        assert!(s.verify(&t).await.is_err());

        // Wrong audience.
        let aud = TokenService::new(kv.clone(), "berth", "elsewhere", 300);
        let (t, _) = aud.issue("alice", vec![]).await.unwrap();
        assert!(matches!(s.verify(&t).await, Err(TokenError::Audience)));

        // Expired.
        let short = TokenService::new(kv, "berth", "registry", 0);
        let (t, mut c) = short.issue("alice", vec![]).await.unwrap();
        c.exp = 1;
        let _ = t;
        let (kid, key) = short.signing_key().await.unwrap();
        let h = B64.encode(format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#));
        let body = B64.encode(serde_json::to_vec(&c).unwrap());
        let sig: Signature = key.sign(format!("{h}.{body}").as_bytes());
        let sig = sig.normalize_s().unwrap_or(sig);
        let t = format!("{h}.{body}.{}", B64.encode(sig.to_bytes()));
        assert!(matches!(s.verify(&t).await, Err(TokenError::Expired)));

        assert!(matches!(s.verify("a.b").await, Err(TokenError::Malformed)));
    }

    #[tokio::test]
    async fn only_the_low_s_twin_of_a_signature_verifies() {
        let s = service(Arc::new(MemoryKv::new()));
        for _ in 0..8 {
            let (token, _) = s.issue("alice", vec![]).await.unwrap();
            assert!(s.verify(&token).await.is_ok());
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = Signature::from_slice(&B64.decode(sig).unwrap()).unwrap();
            assert!(sig.normalize_s().is_none(), "issued low-S");
            // (r, n - s): the high-S twin, a valid ECDSA signature too.
            let (r, low) = sig.split_scalars();
            let twin = Signature::from_scalars(r, -*low).unwrap();
            let forged = format!("{input}.{}", B64.encode(twin.to_bytes()));
            assert!(matches!(
                s.verify(&forged).await,
                Err(TokenError::Signature)
            ));
        }
    }
}
