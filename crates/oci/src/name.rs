//! Repository names, tags and references, after the distribution spec's
//! grammar. Names may have any number of path segments.

use crate::digest::Digest;
use std::fmt;

/// The longest repository name accepted, as Distribution and most clients do.
pub const MAX_NAME_LEN: usize = 255;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct RepoName(String);

impl RepoName {
    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`
    pub fn parse(s: &str) -> Option<RepoName> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return None;
        }
        s.split('/')
            .all(valid_component)
            .then(|| RepoName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The project: the first path segment.
    pub fn project(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Tag(String);

impl Tag {
    /// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
    pub fn parse(s: &str) -> Option<Tag> {
        let b = s.as_bytes();
        let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
        let ok = !b.is_empty()
            && b.len() <= 128
            && word(b[0])
            && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-');
        ok.then(|| Tag(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What follows `/manifests/`: a tag or a digest.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl Reference {
    pub fn parse(s: &str) -> Option<Reference> {
        if s.contains(':') {
            s.parse().ok().map(Reference::Digest)
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_grammar() {
        for good in [
            "a",
            "library/ubuntu",
            "a/b/c/d/e/f/g/h/i/j",
            "foo.bar",
            "foo_bar",
            "foo__bar",
            "foo---bar",
            "0",
            "my-org/team/app.v2",
        ] {
            assert!(RepoName::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "A",
            "foo/",
            "/foo",
            "foo//bar",
            "foo..bar",
            "foo___bar",
            "-foo",
            "foo-",
            "foo_.bar",
            "foo bar",
            "foo:bar",
            &"a".repeat(256),
        ] {
            assert!(RepoName::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(RepoName::parse("proj/app").unwrap().project(), "proj");
    }

    #[test]
    fn tags_follow_the_grammar() {
        assert!(Tag::parse("latest").is_some());
        assert!(Tag::parse("_x.Y-1").is_some());
        assert!(Tag::parse(&"a".repeat(128)).is_some());
        assert!(Tag::parse(&"a".repeat(129)).is_none());
        assert!(Tag::parse(".x").is_none());
        assert!(Tag::parse("-x").is_none());
        assert!(Tag::parse("").is_none());
        assert!(Tag::parse("a/b").is_none());
    }

    #[test]
    fn references() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(Reference::parse(d.as_str()), Some(Reference::Digest(d)));
        assert!(matches!(Reference::parse("v1"), Some(Reference::Tag(_))));
        assert_eq!(Reference::parse("sha256:zz"), None);
    }
}
