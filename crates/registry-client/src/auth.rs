//! Authentication as docker does it: learn the scheme from a 401's
//! `WWW-Authenticate`, then send Basic credentials, or fetch a Bearer
//! token for the scopes the operation needs from the challenge's realm
//! (Docker Registry v2 token authentication) and cache it per scope.
//!
//! Where credentials may go: to the registry itself, always (the user
//! configured that URL); to a token realm only over https, or over plain
//! http when the registry itself is plain http (the user already accepted
//! cleartext). An https registry whose realm is plain http, on whatever
//! host, gets an error rather than the password in cleartext.

use crate::endpoint::Credentials;
use crate::error::ClientError;
use crate::header::{self, Challenge};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::Url;
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Token lifetime when the token service does not say (`expires_in`), as
/// the token specification defines it.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Largest token response read.
const MAX_TOKEN_RESPONSE: usize = 1 << 20;

/// An access scope of the token specification.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Scope(String);

impl Scope {
    /// `repository:<name>:pull`.
    pub fn pull(repo: &berth_oci::RepoName) -> Scope {
        Scope(format!("repository:{repo}:pull"))
    }

    /// `repository:<name>:pull,push`.
    pub fn push(repo: &berth_oci::RepoName) -> Scope {
        Scope(format!("repository:{repo}:pull,push"))
    }

    /// `repository:<name>:delete`.
    pub fn delete(repo: &berth_oci::RepoName) -> Scope {
        Scope(format!("repository:{repo}:delete"))
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Scope {
        Scope("registry:catalog:*".into())
    }
}

/// The scheme a registry asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Basic,
    Bearer { realm: Url, service: Option<String> },
}

/// Which authentication a [`Ping`](crate::Ping) found the registry using.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// No authentication was asked for.
    Anonymous,
    /// HTTP Basic on every request.
    Basic,
    /// Bearer tokens from the token service at `realm`.
    Bearer {
        /// The token service's URL.
        realm: String,
    },
}

/// An `Authorization` header ready to send, and where it came from.
#[derive(Clone, Debug)]
pub(crate) struct Authorization {
    pub header: HeaderValue,
    /// A token from the cache (it may have been revoked: one refresh is
    /// worth trying), as opposed to one just issued or Basic credentials.
    cached: bool,
}

struct CachedToken {
    header: HeaderValue,
    usable_until: Instant,
}

/// The authentication state of one registry: its scheme once learned, and
/// tokens per scope set.
pub(crate) struct Authenticator {
    registry: Url,
    credentials: Option<Credentials>,
    scheme: Mutex<Option<Scheme>>,
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl Authenticator {
    pub fn new(registry: Url, credentials: Option<Credentials>) -> Authenticator {
        Authenticator {
            registry,
            credentials,
            scheme: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The scheme learned so far.
    pub fn kind(&self) -> AuthKind {
        match &*lock(&self.scheme) {
            None => AuthKind::Anonymous,
            Some(Scheme::Basic) => AuthKind::Basic,
            Some(Scheme::Bearer { realm, .. }) => AuthKind::Bearer {
                realm: realm.to_string(),
            },
        }
    }

    /// The header to send before any challenge, once the scheme is known:
    /// Basic credentials, or a cached token for `scopes`, or a new one.
    /// Saves the 401 round trip (and a resent body) on every request but
    /// the first.
    pub async fn authorize(
        &self,
        http: &reqwest::Client,
        scopes: &[Scope],
    ) -> Result<Option<Authorization>, ClientError> {
        let scheme = lock(&self.scheme).clone();
        match scheme {
            None => Ok(None),
            Some(Scheme::Basic) => Ok(self.basic()?.map(|header| Authorization {
                header,
                cached: false,
            })),
            Some(Scheme::Bearer { realm, service }) => {
                let key = token_key(&realm, service.as_deref(), scopes);
                if let Some(header) = self.cached(&key) {
                    return Ok(Some(Authorization {
                        header,
                        cached: true,
                    }));
                }
                let set: BTreeSet<&str> = scopes.iter().map(|s| s.0.as_str()).collect();
                let header = self
                    .fetch_token(http, &realm, service.as_deref(), &set, &key)
                    .await?;
                Ok(Some(Authorization {
                    header,
                    cached: false,
                }))
            }
        }
    }

    /// After a 401 from the registry with `headers`, having sent `sent`:
    /// the header to retry with, or the error to report. One retry per
    /// request at most (the caller's rule).
    pub async fn after_unauthorized(
        &self,
        http: &reqwest::Client,
        headers: &HeaderMap,
        scopes: &[Scope],
        sent: Option<&Authorization>,
    ) -> Result<Authorization, ClientError> {
        let values = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let challenges = header::challenges(values);
        let bearer = challenges
            .iter()
            .find(|c| c.scheme == "bearer" && c.param("realm").is_some());
        let basic = challenges.iter().find(|c| c.scheme == "basic");
        if let Some(challenge) = bearer {
            let (realm, service) = self.bearer_params(challenge)?;
            *lock(&self.scheme) = Some(Scheme::Bearer {
                realm: realm.clone(),
                service: service.clone(),
            });
            let key = token_key(&realm, service.as_deref(), scopes);
            let mut set: BTreeSet<&str> = scopes.iter().map(|s| s.0.as_str()).collect();
            let before = set.len();
            // The registry's own view of what the request needs joins ours.
            if let Some(asked) = challenge.param("scope") {
                set.extend(asked.split(' ').filter(|s| !s.is_empty()));
            }
            let wider = set.len() > before;
            if let Some(sent) = sent {
                if !sent.cached && !wider {
                    return Err(refused(challenge, &self.credentials));
                }
                lock(&self.tokens).remove(&key);
            }
            let header = self
                .fetch_token(http, &realm, service.as_deref(), &set, &key)
                .await?;
            return Ok(Authorization {
                header,
                cached: false,
            });
        }
        if let Some(challenge) = basic {
            *lock(&self.scheme) = Some(Scheme::Basic);
            if sent.is_some() {
                return Err(refused(challenge, &self.credentials));
            }
            return match self.basic()? {
                Some(header) => Ok(Authorization {
                    header,
                    cached: false,
                }),
                None => Err(refused(challenge, &None)),
            };
        }
        Err(ClientError::Auth {
            status: Some(401),
            code: None,
            message: "the registry answered 401 without a Basic or Bearer challenge".into(),
        })
    }

    fn basic(&self) -> Result<Option<HeaderValue>, ClientError> {
        self.credentials
            .as_ref()
            .map(|c| {
                HeaderValue::from_str(&c.basic()).map_err(|_| {
                    ClientError::Invalid("credentials contain characters a header cannot".into())
                })
            })
            .transpose()
    }

    fn cached(&self, key: &str) -> Option<HeaderValue> {
        let mut tokens = lock(&self.tokens);
        match tokens.get(key) {
            Some(t) if t.usable_until > Instant::now() => Some(t.header.clone()),
            Some(_) => {
                tokens.remove(key);
                None
            }
            None => None,
        }
    }

    /// The realm (checked) and service of a Bearer challenge.
    fn bearer_params(&self, c: &Challenge) -> Result<(Url, Option<String>), ClientError> {
        let raw = c.param("realm").unwrap_or_default();
        // A relative realm is resolved against the registry.
        let realm = self
            .registry
            .join(raw)
            .map_err(|e| ClientError::Protocol(format!("token realm {raw:?} is not a URL: {e}")))?;
        if !matches!(realm.scheme(), "http" | "https") {
            return Err(ClientError::Protocol(format!(
                "token realm {realm} is neither http nor https"
            )));
        }
        let service = c.param("service").filter(|s| !s.is_empty());
        Ok((realm, service.map(str::to_owned)))
    }

    /// GETs a token for `scopes` from `realm`, with Basic credentials when
    /// configured (and allowed there), anonymously otherwise; caches it
    /// under `key`.
    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        realm: &Url,
        service: Option<&str>,
        scopes: &BTreeSet<&str>,
        key: &str,
    ) -> Result<HeaderValue, ClientError> {
        let mut url = realm.clone();
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        let mut req = http.get(url);
        if let Some(creds) = &self.credentials {
            if !may_send_credentials(realm, &self.registry) {
                return Err(ClientError::Auth {
                    status: None,
                    code: None,
                    message: format!(
                        "refusing to send the credentials of {} to the token service {realm} over \
                         plain http while the registry {} uses https",
                        creds.username, self.registry
                    ),
                });
            }
            req = req.header(AUTHORIZATION, creds.basic());
        }
        let context = format!("GET {} (token)", crate::transport::describe(realm));
        let started = Instant::now();
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::network(context.clone(), e))?;
        let status = resp.status();
        if !status.is_success() {
            let err = crate::transport::error_from(resp, context).await;
            return Err(match err {
                ClientError::Registry {
                    status: s @ (401 | 403),
                    code,
                    message,
                    ..
                } => ClientError::Auth {
                    status: Some(s),
                    code,
                    message: match &self.credentials {
                        Some(c) => format!(
                            "the token service {realm} refused the credentials of {}: {message}",
                            c.username
                        ),
                        None => format!(
                            "the token service {realm} refused an anonymous token: {message}"
                        ),
                    },
                },
                other => other,
            });
        }
        let body = crate::transport::read_limited(resp, MAX_TOKEN_RESPONSE, &context).await?;
        let (token, lifetime) = parse_token(&body)?;
        let header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            ClientError::Protocol("the token service returned a token a header cannot carry".into())
        })?;
        let mut tokens = lock(&self.tokens);
        // Expired tokens of scopes no longer asked for (a replication over
        // many repositories) would otherwise stay forever.
        let now = Instant::now();
        tokens.retain(|_, t| t.usable_until > now);
        tokens.insert(
            key.to_owned(),
            CachedToken {
                header: header.clone(),
                usable_until: usable_until(started, lifetime),
            },
        );
        Ok(header)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The guarded maps stay consistent at every step: a panic elsewhere
    // while holding the lock leaves nothing half-written.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The cache key of a token: realm, service and the sorted scopes.
fn token_key(realm: &Url, service: Option<&str>, scopes: &[Scope]) -> String {
    let set: BTreeSet<&str> = scopes.iter().map(|s| s.0.as_str()).collect();
    let scopes: Vec<&str> = set.into_iter().collect();
    format!("{realm} {} {}", service.unwrap_or(""), scopes.join(" "))
}

/// The rule of the module doc: https realms always, plain http realms
/// only for plain http registries.
fn may_send_credentials(realm: &Url, registry: &Url) -> bool {
    realm.scheme() == "https" || registry.scheme() == "http"
}

/// The token (`token`, or OAuth2's `access_token`) and its lifetime.
fn parse_token(body: &[u8]) -> Result<(String, Duration), ClientError> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let r: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| ClientError::Protocol(format!("token response is not JSON: {e}")))?;
    let token = r
        .token
        .filter(|t| !t.is_empty())
        .or(r.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| ClientError::Protocol("token response has no token".into()))?;
    let lifetime = r
        .expires_in
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Ok((token, lifetime))
}

/// When a token fetched at `fetched` stops being used: its lifetime less a
/// margin (a quarter of it, at most 30 s) for clock skew and requests in
/// flight.
fn usable_until(fetched: Instant, lifetime: Duration) -> Instant {
    let margin = (lifetime / 4).min(Duration::from_secs(30));
    fetched + lifetime - margin
}

/// The error for credentials (or their absence) that a challenge rejected.
fn refused(challenge: &Challenge, credentials: &Option<Credentials>) -> ClientError {
    let message = if challenge.param("error") == Some("insufficient_scope") {
        format!(
            "the token does not grant {}",
            challenge.param("scope").unwrap_or("the access needed")
        )
    } else {
        match credentials {
            Some(c) => format!("the registry refused the credentials of {}", c.username),
            None => "the registry requires credentials and none are configured".into(),
        }
    };
    ClientError::Auth {
        status: Some(401),
        code: Some("UNAUTHORIZED".into()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn credentials_go_to_realms_by_the_rule() {
        let https = url("https://registry.example.com/");
        let http = url("http://registry.example.com/");
        assert!(may_send_credentials(
            &url("https://auth.other/token"),
            &https
        ));
        assert!(may_send_credentials(
            &url("https://auth.other/token"),
            &http
        ));
        assert!(may_send_credentials(&url("http://auth.other/token"), &http));
        assert!(!may_send_credentials(
            &url("http://auth.other/token"),
            &https
        ));
        assert!(!may_send_credentials(
            &url("http://registry.example.com/token"),
            &https
        ));
    }

    #[test]
    fn token_responses() {
        let (t, l) = parse_token(br#"{"token":"a","expires_in":300}"#).unwrap();
        assert_eq!((t.as_str(), l), ("a", Duration::from_secs(300)));
        let (t, l) = parse_token(br#"{"access_token":"b"}"#).unwrap();
        assert_eq!((t.as_str(), l), ("b", DEFAULT_TOKEN_LIFETIME));
        let (t, _) = parse_token(br#"{"token":"","access_token":"c","expires_in":0}"#).unwrap();
        assert_eq!(t, "c");
        assert!(parse_token(br#"{"expires_in":3}"#).is_err());
        assert!(parse_token(b"<html>").is_err());
    }

    #[test]
    fn tokens_are_dropped_before_they_expire() {
        let t0 = Instant::now();
        assert_eq!(
            usable_until(t0, Duration::from_secs(60)),
            t0 + Duration::from_secs(45)
        );
        assert_eq!(
            usable_until(t0, Duration::from_secs(3600)),
            t0 + Duration::from_secs(3570)
        );
        assert_eq!(
            usable_until(t0, Duration::from_secs(4)),
            t0 + Duration::from_secs(3)
        );
    }

    #[test]
    fn keys_ignore_scope_order() {
        let r = url("https://a/token");
        let a = berth_oci::RepoName::parse("a").unwrap();
        let b = berth_oci::RepoName::parse("b").unwrap();
        assert_eq!(
            token_key(&r, Some("s"), &[Scope::push(&a), Scope::pull(&b)]),
            token_key(&r, Some("s"), &[Scope::pull(&b), Scope::push(&a)])
        );
        assert_ne!(
            token_key(&r, Some("s"), &[Scope::pull(&a)]),
            token_key(&r, Some("s"), &[Scope::push(&a)])
        );
    }

    #[test]
    fn expired_tokens_leave_the_cache() {
        let auth = Authenticator::new(url("https://r/"), None);
        let header = HeaderValue::from_static("Bearer x");
        lock(&auth.tokens).insert(
            "old".into(),
            CachedToken {
                header: header.clone(),
                usable_until: Instant::now() - Duration::from_secs(1),
            },
        );
        lock(&auth.tokens).insert(
            "new".into(),
            CachedToken {
                header: header.clone(),
                usable_until: Instant::now() + Duration::from_secs(60),
            },
        );
        assert_eq!(auth.cached("old"), None);
        assert_eq!(auth.cached("new"), Some(header));
        assert!(!lock(&auth.tokens).contains_key("old"));
    }
}
