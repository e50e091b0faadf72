//! Turns a `/v2/...` path into an [`Endpoint`]. Repository names have any
//! number of segments, so the path is matched from its end, as Distribution
//! does, instead of with one route per depth.

use axum::http::Method;
use berth_oci::{Digest, ErrorCode, Reference, RepoName};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Base,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, Reference),
    Blob(RepoName, Digest),
    UploadStart(RepoName),
    Upload(RepoName, String),
    Referrers(RepoName, Digest),
}

impl Endpoint {
    /// The same endpoint about `repo` instead (a mirror's name).
    pub fn with_repo(self, repo: RepoName) -> Endpoint {
        match self {
            Endpoint::Base | Endpoint::Catalog => self,
            Endpoint::Tags(_) => Endpoint::Tags(repo),
            Endpoint::Manifest(_, r) => Endpoint::Manifest(repo, r),
            Endpoint::Blob(_, d) => Endpoint::Blob(repo, d),
            Endpoint::UploadStart(_) => Endpoint::UploadStart(repo),
            Endpoint::Upload(_, id) => Endpoint::Upload(repo, id),
            Endpoint::Referrers(_, d) => Endpoint::Referrers(repo, d),
        }
    }

    /// The repository the request is about, if any.
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Tags(repo)
            | Endpoint::Manifest(repo, _)
            | Endpoint::Blob(repo, _)
            | Endpoint::UploadStart(repo)
            | Endpoint::Upload(repo, _)
            | Endpoint::Referrers(repo, _) => Some(repo),
        }
    }

    /// The methods this endpoint answers, for `Allow` on a 405. `HEAD` goes
    /// wherever `GET` does.
    pub fn allowed_methods(&self) -> &'static [Method] {
        match self {
            Endpoint::Base | Endpoint::Catalog | Endpoint::Tags(_) | Endpoint::Referrers(..) => {
                &[Method::GET, Method::HEAD]
            }
            Endpoint::Manifest(..) => &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
            Endpoint::Blob(..) => &[Method::GET, Method::HEAD, Method::DELETE],
            Endpoint::UploadStart(_) => &[Method::POST],
            Endpoint::Upload(..) => &[
                Method::GET,
                Method::HEAD,
                Method::PATCH,
                Method::PUT,
                Method::DELETE,
            ],
        }
    }
}

/// Why a path is not an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No endpoint has this shape.
    NotFound,
    /// The shape is right but a part is invalid.
    Invalid(ErrorCode, String),
    /// A manifest path whose reference is neither a tag nor a digest: no
    /// manifest can be found there, and none can be pushed there.
    InvalidTag(String),
}

/// `path` is everything after `/v2`, e.g. `/library/ubuntu/manifests/latest`.
pub fn parse(path: &str) -> Result<Endpoint, RouteError> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    if rest.is_empty() {
        return Ok(Endpoint::Base);
    }
    if rest == "_catalog" {
        return Ok(Endpoint::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Ok(Endpoint::Tags(name_of(name)?));
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Ok(Endpoint::UploadStart(name_of(name)?));
    }
    let (head, last) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
    if let Some(name) = head.strip_suffix("/blobs/uploads") {
        if last.is_empty() || !last.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(RouteError::Invalid(
                ErrorCode::BlobUploadUnknown,
                "malformed upload id".into(),
            ));
        }
        return Ok(Endpoint::Upload(name_of(name)?, last.to_owned()));
    }
    if let Some(name) = head.strip_suffix("/manifests") {
        let name = name_of(name)?;
        // Anything with a `:` is meant as a digest, and a malformed digest
        // is a bad request, as it is on every other endpoint.
        let reference = if last.contains(':') {
            Reference::Digest(digest_of(last)?)
        } else {
            Reference::parse(last)
                .ok_or_else(|| RouteError::InvalidTag(format!("invalid tag {last:?}")))?
        };
        return Ok(Endpoint::Manifest(name, reference));
    }
    if let Some(name) = head.strip_suffix("/blobs") {
        return Ok(Endpoint::Blob(name_of(name)?, digest_of(last)?));
    }
    if let Some(name) = head.strip_suffix("/referrers") {
        return Ok(Endpoint::Referrers(name_of(name)?, digest_of(last)?));
    }
    Err(RouteError::NotFound)
}

fn name_of(s: &str) -> Result<RepoName, RouteError> {
    RepoName::parse(s).ok_or_else(|| {
        RouteError::Invalid(
            ErrorCode::NameInvalid,
            format!("invalid repository name {s:?}"),
        )
    })
}

fn digest_of(s: &str) -> Result<Digest, RouteError> {
    s.parse()
        .map_err(|e| RouteError::Invalid(ErrorCode::DigestInvalid, format!("{e}: {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        RepoName::parse(s).unwrap()
    }

    #[test]
    fn parses_every_endpoint() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(parse("/"), Ok(Endpoint::Base));
        assert_eq!(parse(""), Ok(Endpoint::Base));
        assert_eq!(parse("/_catalog"), Ok(Endpoint::Catalog));
        assert_eq!(parse("/a/b/c/tags/list"), Ok(Endpoint::Tags(name("a/b/c"))));
        assert_eq!(
            parse("/a/blobs/uploads/"),
            Ok(Endpoint::UploadStart(name("a")))
        );
        assert_eq!(
            parse("/a/blobs/uploads"),
            Ok(Endpoint::UploadStart(name("a")))
        );
        assert_eq!(
            parse("/a/b/blobs/uploads/abc-123"),
            Ok(Endpoint::Upload(name("a/b"), "abc-123".into()))
        );
        assert_eq!(
            parse(&format!("/x/y/z/w/v/u/t/s/blobs/{d}")),
            Ok(Endpoint::Blob(name("x/y/z/w/v/u/t/s"), d.clone()))
        );
        assert_eq!(
            parse("/a/manifests/latest"),
            Ok(Endpoint::Manifest(
                name("a"),
                Reference::parse("latest").unwrap()
            ))
        );
        assert_eq!(
            parse(&format!("/a/referrers/{d}")),
            Ok(Endpoint::Referrers(name("a"), d))
        );
        // A repository may itself be called "blobs" or "manifests".
        assert_eq!(parse("/blobs/tags/list"), Ok(Endpoint::Tags(name("blobs"))));
        assert_eq!(
            parse("/manifests/manifests/v1"),
            Ok(Endpoint::Manifest(
                name("manifests"),
                Reference::parse("v1").unwrap()
            ))
        );
    }

    #[test]
    fn rejects_bad_parts() {
        let invalid = |path: &str| match parse(path) {
            Err(RouteError::Invalid(code, _)) => Some(code),
            _ => None,
        };
        assert_eq!(invalid("/UPPER/tags/list"), Some(ErrorCode::NameInvalid));
        for path in [
            "/a/blobs/sha256:zz",
            "/a/manifests/sha256:abc",
            "/a/manifests/md5:abc",
        ] {
            assert_eq!(invalid(path), Some(ErrorCode::DigestInvalid), "{path}");
        }
        let long = format!("/a/manifests/{}", "t".repeat(129));
        for path in ["/a/manifests/-bad", long.as_str()] {
            assert!(
                matches!(parse(path), Err(RouteError::InvalidTag(_))),
                "{path}"
            );
        }
        assert!(matches!(
            parse("/a/blobs/uploads/../x"),
            Err(RouteError::Invalid(..)) | Err(RouteError::NotFound)
        ));
        assert_eq!(parse("/a/unknown/x"), Err(RouteError::NotFound));
        assert_eq!(parse("/onlyname"), Err(RouteError::NotFound));
    }
}
