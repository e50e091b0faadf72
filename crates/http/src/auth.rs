//! Authentication and authorization of HTTP requests. Credentials are a
//! Bearer token (issued by `/service/token`), Basic credentials sent
//! straight to `/v2`, or nothing (anonymous). Every decision goes through
//! `berth_auth::rbac::permitted`, or, for a token, through the access the
//! token service granted from that same function.

use crate::error::ApiError;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use berth_auth::directory::DirectoryError;
use berth_auth::model::{Action, Actions, Principal};
use berth_auth::ratelimit::FailedLogins;
use berth_auth::rbac::{permitted, ProjectFacts};
use berth_auth::token::{Claims, TokenService};
use berth_auth::Directory;
use berth_core::CoreError;
use berth_oci::error::error_body;
use berth_oci::{ErrorCode, RepoName};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long verified Basic credentials are remembered, so that clients
/// sending Basic on every request do not pay argon2 each time.
const BASIC_CACHE_TTL: Duration = Duration::from_secs(60);

pub struct Auth {
    pub directory: Directory,
    pub tokens: TokenService,
    pub limiter: FailedLogins,
    /// Token realm; derived from the request's Host when unset.
    pub realm: Option<String>,
    pub admin_creates_projects: bool,
    /// The scheme of a realm derived from the request's Host: "https" when
    /// berth terminates TLS itself.
    pub scheme: &'static str,
    /// Verified credentials: the principal, the version of its account
    /// record when it was verified, and when.
    basic_cache: Mutex<HashMap<[u8; 32], CachedLogin>>,
}

struct CachedLogin {
    principal: Principal,
    account_version: Option<u64>,
    at: Instant,
}

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub principal: Principal,
    /// Present when the caller used a Bearer token: its grants are the
    /// caller's permissions for `/v2`.
    pub claims: Option<Claims>,
    pub address: String,
}

pub enum Credentials {
    None,
    Basic(String, String),
    Bearer(String),
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Exists(what) => {
                ApiError::detail(ErrorCode::Denied, format!("{what} already exists"))
            }
            DirectoryError::NotFound(what) => {
                ApiError::detail(ErrorCode::NameUnknown, format!("{what} not found"))
            }
            DirectoryError::Invalid(what) => {
                ApiError::detail(ErrorCode::Unsupported, format!("invalid {what}"))
            }
            DirectoryError::Kv(e) => ApiError(e.into()),
            DirectoryError::Internal(m) => ApiError(CoreError::internal(m)),
        }
    }
}

pub fn credentials(headers: &HeaderMap) -> Credentials {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Credentials::None;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Bearer(rest.trim().to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        if let Some((user, pass)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            return Credentials::Basic(user.to_owned(), pass.to_owned());
        }
        // Malformed Basic credentials are wrong credentials.
        return Credentials::Basic(String::new(), String::new());
    }
    Credentials::None
}

impl Auth {
    pub fn new(
        directory: Directory,
        tokens: TokenService,
        realm: Option<String>,
        admin_creates_projects: bool,
    ) -> Self {
        Auth {
            directory,
            tokens,
            limiter: FailedLogins::default(),
            realm,
            admin_creates_projects,
            scheme: "http",
            basic_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a name and password, rate-limited per (user, address) and per
    /// address (see `berth_auth::ratelimit`): wrong passwords from one place
    /// never lock the user out elsewhere. `Err` with 429 when blocked;
    /// `Ok(None)` for wrong credentials.
    pub async fn login(
        &self,
        user: &str,
        pass: &str,
        address: &str,
    ) -> Result<Option<Principal>, ApiError> {
        let cache_key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0u8])
            .chain_update(pass.as_bytes())
            .finalize()
            .into();
        let cached = self
            .basic_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
            .filter(|c| c.at.elapsed() < BASIC_CACHE_TTL)
            .map(|c| (c.principal.clone(), c.account_version));
        if let Some((principal, version)) = cached {
            // One metadata read instead of argon2, and a changed, deleted
            // or revoked account is noticed at once.
            if self.directory.account_version(principal.name()).await? == version {
                return Ok(Some(principal));
            }
        }
        // Counted before the password is checked, so that concurrent
        // guesses cannot all pass before the first failure is recorded;
        // forgiven below when the password was right or was not checked.
        if let Err(why) = self.limiter.attempt(user, address) {
            tracing::warn!(user, address, %why, "login blocked");
            return Err(ApiError::detail(
                ErrorCode::TooManyRequests,
                "too many failed logins; try again later",
            ));
        }
        let principal = match self.directory.authenticate(user, pass).await {
            Ok(p) => p,
            Err(e) => {
                self.limiter.forgive(user, address);
                return Err(e.into());
            }
        };
        match &principal {
            Some(p) => {
                self.limiter.forgive(user, address);
                let account_version = self.directory.account_version(p.name()).await?;
                let mut cache = self.basic_cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() > 10_000 {
                    cache.retain(|_, c| c.at.elapsed() < BASIC_CACHE_TTL);
                }
                cache.insert(
                    cache_key,
                    CachedLogin {
                        principal: p.clone(),
                        account_version,
                        at: Instant::now(),
                    },
                );
            }
            None => {
                tracing::info!(user, address, "failed login");
            }
        }
        Ok(principal)
    }

    /// Who is calling. Wrong credentials are an error (401), never a silent
    /// fall back to anonymous.
    pub async fn caller(&self, headers: &HeaderMap, address: &str) -> Result<Caller, AuthFailure> {
        match credentials(headers) {
            Credentials::None => Ok(Caller {
                principal: Principal::Anonymous,
                claims: None,
                address: address.to_owned(),
            }),
            Credentials::Basic(user, pass) => match self
                .login(&user, &pass, address)
                .await
                .map_err(AuthFailure::Error)?
            {
                Some(principal) => Ok(Caller {
                    principal,
                    claims: None,
                    address: address.to_owned(),
                }),
                None => Err(AuthFailure::Unauthenticated("invalid username or password")),
            },
            Credentials::Bearer(token) => match self.tokens.verify(&token).await {
                Ok(claims) => Ok(Caller {
                    principal: self
                        .principal_of(&claims.sub)
                        .await
                        .map_err(AuthFailure::Error)?,
                    claims: Some(claims),
                    address: address.to_owned(),
                }),
                Err(berth_auth::token::TokenError::Kv(e)) => {
                    Err(AuthFailure::Error(ApiError(e.into())))
                }
                Err(e) => {
                    tracing::info!(address, error = %e, "rejected token");
                    Err(AuthFailure::Unauthenticated("invalid or expired token"))
                }
            },
        }
    }

    /// The principal a token was issued to, as it is now (a deleted user or
    /// revoked robot keeps only what the token itself grants).
    async fn principal_of(&self, sub: &str) -> Result<Principal, ApiError> {
        if sub.is_empty() {
            return Ok(Principal::Anonymous);
        }
        if sub.starts_with("robot$") {
            return Ok(match self.directory.robot(sub).await? {
                Some(r) => Principal::Robot {
                    name: r.name,
                    permissions: r.permissions,
                },
                None => Principal::Anonymous,
            });
        }
        Ok(match self.directory.user(sub).await? {
            Some(u) => Principal::User {
                name: u.name,
                admin: u.admin,
                groups: Vec::new(),
            },
            None => Principal::Anonymous,
        })
    }

    /// What `principal` may do in the project of `repo`.
    pub async fn permitted(
        &self,
        principal: &Principal,
        project: &str,
    ) -> Result<Actions, ApiError> {
        if principal.is_admin() {
            // Admins may do everything; only a missing project needs a look.
            let exists = self.directory.project(project).await?.is_some();
            return Ok(if exists || self.admin_creates_projects {
                Actions::ALL
            } else {
                Actions::PULL.with(Action::Delete)
            });
        }
        let record = self.directory.project(project).await?;
        let role = match (&record, principal) {
            (Some(_), Principal::User { .. }) => self.directory.role_of(principal, project).await?,
            _ => None,
        };
        Ok(permitted(
            principal,
            &ProjectFacts {
                name: project,
                project: record.as_ref(),
                role,
                admin_creates_projects: self.admin_creates_projects,
            },
        ))
    }

    /// Whether `caller` may do `action` on `repo`: by its token's grants, or
    /// by its identity.
    pub async fn allows(
        &self,
        caller: &Caller,
        repo: &RepoName,
        action: Action,
    ) -> Result<bool, ApiError> {
        match &caller.claims {
            Some(c) => Ok(c.allows("repository", repo.as_str(), action.as_str())),
            None => Ok(self
                .permitted(&caller.principal, repo.project())
                .await?
                .has(action)),
        }
    }

    /// Creates the project of `repo` when a system administrator pushes
    /// into a project that does not exist yet.
    pub async fn ensure_project(&self, caller: &Caller, repo: &RepoName) -> Result<(), ApiError> {
        if !caller.principal.is_admin() || !self.admin_creates_projects {
            return Ok(());
        }
        if self.directory.project(repo.project()).await?.is_none() {
            match self.directory.create_project(repo.project(), false).await {
                Ok(_) => tracing::info!(
                    project = repo.project(),
                    by = caller.principal.name(),
                    "project created by push"
                ),
                Err(DirectoryError::Exists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    pub fn realm(&self, headers: &HeaderMap) -> String {
        match &self.realm {
            Some(r) => r.clone(),
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("127.0.0.1:5000");
                let proto = headers
                    .get("x-forwarded-proto")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or(self.scheme);
                format!("{proto}://{host}/service/token")
            }
        }
    }

    /// A 401 with the Bearer challenge naming what the request needs.
    pub fn challenge(
        &self,
        headers: &HeaderMap,
        scope: Option<&str>,
        insufficient: bool,
        detail: &str,
    ) -> Response {
        let mut value = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            self.realm(headers),
            self.tokens.service
        );
        if let Some(s) = scope {
            value.push_str(&format!(",scope=\"{s}\""));
        }
        if insufficient {
            value.push_str(",error=\"insufficient_scope\"");
        }
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            error_body(ErrorCode::Unauthorized, Some(detail)),
        )
            .into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// Why a request could not be authenticated.
pub enum AuthFailure {
    /// Wrong credentials: answer 401 with a challenge.
    Unauthenticated(&'static str),
    Error(ApiError),
}
