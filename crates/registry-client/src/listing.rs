//! The base check (`GET /v2/`) and the paginated listings: the catalog
//! and a repository's tags, every page followed through `Link` headers.

use crate::auth::{AuthKind, Scope};
use crate::error::ClientError;
use crate::header;
use crate::transport::{header_str, read_limited, same_origin, Request};
use crate::Client;
use berth_oci::{RepoName, Tag};
use reqwest::{Method, Response, Url};
use std::collections::HashSet;

/// Largest page of a listing read into memory.
pub(crate) const MAX_PAGE: usize = 16 << 20;

/// One of the listings of names: its name in messages, the field of a page
/// that holds the names, and what one name is.
struct Listing {
    what: &'static str,
    field: &'static str,
    item: &'static str,
}

const CATALOG: Listing = Listing {
    what: "catalog",
    field: "repositories",
    item: "repository name",
};

const TAGS: Listing = Listing {
    what: "tags",
    field: "tags",
    item: "tag",
};

/// What [`Client::ping`] learned: the registry is reachable, speaks the v2
/// API, and accepted the credentials (or needs none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// The authentication the registry asked for.
    pub auth: AuthKind,
    /// `Docker-Distribution-API-Version`, when sent (`registry/2.0`).
    pub api_version: Option<String>,
}

impl Client {
    /// `GET /v2/`, authenticating as the registry asks: for a "test
    /// connection" action. `Ok` when the registry is reachable and accepts
    /// the credentials (or anonymous access when none are configured); an
    /// [`ClientError::Auth`] error when it refuses them, a network error
    /// when it cannot be reached, a 404 when it is no v2 registry.
    /// Credentials are checked only when the registry asks for
    /// authentication on `/v2/` (a Bearer registry checks them when
    /// issuing the token); one that serves `/v2/` anonymously never sees
    /// them here.
    pub async fn ping(&self) -> Result<Ping, ClientError> {
        let req = Request::new(Method::GET, self.api("/v2/"), Vec::new());
        let resp = self.expect(&req, &[200]).await?;
        Ok(Ping {
            auth: self.inner.auth.kind(),
            api_version: header_str(resp.headers(), "docker-distribution-api-version")
                .map(str::to_owned),
        })
    }

    /// Every repository of the catalog (`GET /v2/_catalog`), all pages.
    /// Names that break the repository grammar are skipped with a warning.
    pub async fn catalog(&self) -> Result<Vec<RepoName>, ClientError> {
        let first = self.api("/v2/_catalog");
        self.names(first, vec![Scope::catalog()], &CATALOG, RepoName::parse)
            .await
    }

    /// Every tag of `repo` (`GET /v2/<name>/tags/list`), all pages. Tags
    /// that break the tag grammar are skipped with a warning.
    pub async fn tags(&self, repo: &RepoName) -> Result<Vec<Tag>, ClientError> {
        let first = self.api(&format!("/v2/{repo}/tags/list"));
        self.names(first, vec![Scope::pull(repo)], &TAGS, Tag::parse)
            .await
    }

    /// Every name of `listing` from page `first` on; those `parse` refuses
    /// are skipped with a warning.
    async fn names<T>(
        &self,
        first: Url,
        scopes: Vec<Scope>,
        listing: &Listing,
        parse: fn(&str) -> Option<T>,
    ) -> Result<Vec<T>, ClientError> {
        let Listing { what, field, item } = listing;
        let invalid = |e: serde_json::Error| ClientError::Protocol(format!("{what} page: {e}"));
        let mut out = Vec::new();
        self.each_page(self.paged(first), scopes, |body| {
            let mut page: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(body).map_err(invalid)?;
            // Distribution sends `null` for a repository without tags.
            let names: Option<Vec<String>> = match page.remove(*field) {
                Some(names) => serde_json::from_value(names).map_err(invalid)?,
                None => None,
            };
            for name in names.unwrap_or_default() {
                match parse(&name) {
                    Some(n) => out.push(n),
                    None => tracing::warn!(name, "{what}: skipping an invalid {item}"),
                }
            }
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// `url` with the configured page size.
    fn paged(&self, mut url: Url) -> Url {
        if let Some(n) = self.inner.page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        url
    }

    /// GETs `first` and every `rel="next"` page after it, giving each body
    /// to `page`. Links must stay on the registry's origin (they carry its
    /// credentials); a link seen twice ends the walk.
    pub(crate) async fn each_page(
        &self,
        first: Url,
        scopes: Vec<Scope>,
        mut page: impl FnMut(&[u8]) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        self.each_page_with(first, scopes, None, |body, _| page(body))
            .await
    }

    /// [`Client::each_page`] with an `Accept` header, giving `page` the
    /// answer's headers too.
    pub(crate) async fn each_page_with(
        &self,
        first: Url,
        scopes: Vec<Scope>,
        accept: Option<&str>,
        mut page: impl FnMut(&[u8], &reqwest::header::HeaderMap) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let mut seen = HashSet::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            if !seen.insert(url.to_string()) {
                break;
            }
            let mut req = Request::new(Method::GET, url, scopes.clone());
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            let resp = self.expect(&req, &[200]).await?;
            next = next_page(&resp, &self.inner.base)?;
            let headers = resp.headers().clone();
            let body = read_limited(resp, MAX_PAGE, &req.context()).await?;
            page(&body, &headers)?;
        }
        Ok(())
    }
}

/// The next page's URL from the `Link` header of `resp`.
fn next_page(resp: &Response, base: &Url) -> Result<Option<Url>, ClientError> {
    let links = resp
        .headers()
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let Some(target) = header::next_link(links) else {
        return Ok(None);
    };
    let url = resp
        .url()
        .join(&target)
        .map_err(|e| ClientError::Protocol(format!("Link {target:?}: {e}")))?;
    if !same_origin(&url, base) {
        return Err(ClientError::Protocol(format!(
            "Link to another origin refused: {target}"
        )));
    }
    Ok(Some(url))
}
