//! Bearer tokens, as docker, containerd, podman and skopeo get them: berth
//! answers an unauthenticated `/v2` request with `401` and
//! `WWW-Authenticate: Bearer realm="…",service="…"`; the client `GET`s the
//! realm with `service` and the scopes it needs (`repository:NAME:pull` or
//! `pull,push`, `registry:catalog:*`) and its Basic credentials, and sends
//! the token it gets as `Authorization: Bearer` on every request of that
//! repository until the token expires. docker fetches one token per
//! repository it touches and keeps it for the whole push or pull.
//!
//! [`Tokens`] is that cache, keyed by scope, one per client session (one
//! workload on one server), shared by the session's tasks. A request whose
//! scope has no live token fetches one — in the measured time, as for a
//! real client — and the session's other tasks wait for it rather than
//! fetch their own.

use crate::oci::check;
use crate::Res;
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What a request needs the token to grant.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    /// Reading a repository: blobs, manifests, tags.
    Pull(&'a str),
    /// Writing one: uploads and manifests (a push token also pulls).
    Push(&'a str),
    /// A cross-repository mount: push into `to`, pull from `from`, in one
    /// token (two `scope` parameters), as docker asks for it.
    Mount { to: &'a str, from: &'a str },
    /// The catalog, `registry:catalog:*`.
    Catalog,
}

impl Scope<'_> {
    /// The cache's key: a repository's name (no name contains `:` or a
    /// space), so that a lookup allocates nothing.
    fn key(&self) -> Cow<'_, str> {
        match self {
            Scope::Pull(r) | Scope::Push(r) => Cow::Borrowed(r),
            Scope::Mount { to, from } => Cow::Owned(format!("{to} {from}")),
            Scope::Catalog => Cow::Borrowed("registry:catalog:*"),
        }
    }

    fn push(&self) -> bool {
        matches!(self, Scope::Push(_) | Scope::Mount { .. })
    }

    /// The `scope` parameters of the token request.
    fn params(&self) -> Vec<String> {
        match self {
            Scope::Pull(r) => vec![format!("repository:{r}:pull")],
            Scope::Push(r) => vec![format!("repository:{r}:pull,push")],
            Scope::Mount { to, from } => vec![
                format!("repository:{to}:pull,push"),
                format!("repository:{from}:pull"),
            ],
            Scope::Catalog => vec!["registry:catalog:*".to_owned()],
        }
    }
}

/// The token service named by berth's challenge, and the Basic
/// credentials sent to it.
pub struct Realm {
    url: reqwest::Url,
    service: String,
    basic: HeaderValue,
}

impl Realm {
    /// `GET /v2/` without credentials, and the realm and service of the
    /// Bearer challenge of its `401`.
    pub async fn discover(c: &reqwest::Client, base: &str, basic: HeaderValue) -> Res<Realm> {
        let r = c
            .get(format!("{base}/v2/"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let challenge = r
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = r.status();
        let params = challenge
            .as_deref()
            .and_then(bearer_params)
            .ok_or_else(|| format!("GET /v2/: {status}, no Bearer challenge ({challenge:?})"))?;
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let realm = param("realm").ok_or("Bearer challenge without realm")?;
        Ok(Realm {
            url: reqwest::Url::parse(&realm).map_err(|e| format!("realm {realm}: {e}"))?,
            service: param("service").unwrap_or_default(),
            basic,
        })
    }
}

/// The parameters of a `Bearer` challenge: `name="value"` (or a bare
/// token) separated by commas.
fn bearer_params(header: &str) -> Option<Vec<(String, String)>> {
    let (scheme, mut rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((name, after)) = rest.split_once('=') else {
            return Some(params);
        };
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.push((name.trim().to_owned(), value.to_owned()));
        rest = after;
    }
}

/// A token and until when it is used.
struct Token {
    header: HeaderValue,
    push: bool,
    until: Instant,
}

/// One session's tokens, by scope.
pub struct Tokens {
    realm: Arc<Realm>,
    cache: Mutex<HashMap<String, Token>>,
    /// Held while a token is fetched: the session's other tasks wait for
    /// it, then find it in the cache.
    fetching: tokio::sync::Mutex<()>,
    fetched: AtomicUsize,
}

impl Tokens {
    pub fn new(realm: Arc<Realm>) -> Tokens {
        Tokens {
            realm,
            cache: Mutex::new(HashMap::new()),
            fetching: tokio::sync::Mutex::new(()),
            fetched: AtomicUsize::new(0),
        }
    }

    pub fn realm(&self) -> Arc<Realm> {
        self.realm.clone()
    }

    pub fn fetched(&self) -> usize {
        self.fetched.load(Ordering::Relaxed)
    }

    /// The `Authorization` value for a request that needs `scope`.
    pub async fn header(&self, c: &reqwest::Client, scope: Scope<'_>) -> Res<HeaderValue> {
        let key = scope.key();
        if let Some(h) = self.cached(&key, scope.push()) {
            return Ok(h);
        }
        let _one = self.fetching.lock().await;
        if let Some(h) = self.cached(&key, scope.push()) {
            return Ok(h);
        }
        let token = self.fetch(c, scope).await?;
        let header = token.header.clone();
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Scope::Mount { to, .. } = scope {
            // Also the push token of `to`, for the rest of its push.
            let push = Token {
                header: token.header.clone(),
                ..token
            };
            cache.insert(to.to_owned(), push);
        }
        cache.insert(key.into_owned(), token);
        Ok(header)
    }

    /// A live token for `key`, that pushes if `push`.
    fn cached(&self, key: &str, push: bool) -> Option<HeaderValue> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|t| (t.push || !push) && Instant::now() < t.until)
            .map(|t| t.header.clone())
    }

    /// `GET realm?service=…&scope=…` with the Basic credentials.
    async fn fetch(&self, c: &reqwest::Client, scope: Scope<'_>) -> Res<Token> {
        let mut url = self.realm.url.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("service", &self.realm.service);
            for s in scope.params() {
                query.append_pair("scope", &s);
            }
        }
        let sent = Instant::now();
        let r = c
            .get(url)
            .header(AUTHORIZATION, self.realm.basic.clone())
            .send()
            .await
            .map_err(|e| format!("token: {e}"))?;
        let r = check(r, 200, "token").await?;
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
            expires_in: Option<u64>,
        }
        let body = r.bytes().await.map_err(|e| format!("token: {e}"))?;
        let body: Body = serde_json::from_slice(&body).map_err(|e| format!("token: {e}"))?;
        let token = if body.token.is_empty() {
            body.access_token
        } else {
            body.token
        };
        if token.is_empty() {
            return Err("token service answered no token".into());
        }
        self.fetched.fetch_add(1, Ordering::Relaxed);
        // 60 s when unsaid (the token specification's default); replaced a
        // little early, so that no request goes out with a token about to
        // expire.
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(60).max(1));
        Ok(Token {
            header: HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| format!("token: {e}"))?,
            push: scope.push(),
            until: sent + lifetime * 9 / 10,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge() {
        let p = bearer_params(
            r#"Bearer realm="http://127.0.0.1:5000/service/token",service="berth",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            p,
            [
                ("realm", "http://127.0.0.1:5000/service/token"),
                ("service", "berth"),
                ("scope", "repository:a/b:pull,push"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert!(bearer_params(r#"Basic realm="x""#).is_none());
    }

    #[test]
    fn scopes() {
        assert_eq!(
            Scope::Mount {
                to: "a/b",
                from: "c/d"
            }
            .params(),
            ["repository:a/b:pull,push", "repository:c/d:pull"]
        );
        assert!(!Scope::Pull("a").push());
        assert_eq!(Scope::Catalog.params(), ["registry:catalog:*"]);
    }
}
