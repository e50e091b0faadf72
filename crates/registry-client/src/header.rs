//! Parsers of the header syntaxes the protocol leans on: `WWW-Authenticate`
//! challenges (RFC 7235), `Link` (RFC 8288) and the byte ranges of
//! `Content-Range` and `Range`. Pure functions, tested on the odd shapes
//! real registries send.

/// One authentication challenge: a scheme and its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// The scheme, lowercased (`basic`, `bearer`).
    pub scheme: String,
    /// Parameters in order, names lowercased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of parameter `name` (lowercase).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// A cursor over one header value.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        // Only ASCII token characters were taken.
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("")
    }

    /// A quoted-string (the opening quote is next), unescaped. An
    /// unterminated string runs to the end of the value.
    fn quoted(&mut self) -> String {
        self.pos += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.pos += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Skips to just after the next top-level comma (for recovery).
    fn skip_element(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'"' {
                self.quoted();
                continue;
            }
            self.pos += 1;
            if c == b',' {
                break;
            }
        }
    }
}

/// Every challenge in the `WWW-Authenticate` values `headers` (several
/// headers, several challenges per header, parameters with quoted commas
/// and escapes). Malformed parts are skipped, never fatal: the caller
/// picks the challenge it understands.
pub(crate) fn challenges<'a>(headers: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for value in headers {
        parse_challenges(value, &mut out);
    }
    out
}

fn parse_challenges(value: &str, out: &mut Vec<Challenge>) {
    let mut c = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    loop {
        while matches!(c.peek(), Some(b' ' | b'\t' | b',')) {
            c.pos += 1;
        }
        if c.peek().is_none() {
            return;
        }
        let scheme = c.token();
        if scheme.is_empty() {
            c.skip_element();
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        // Parameters: `name = value` separated by commas, until a token that
        // is not followed by `=` (the next challenge's scheme).
        loop {
            while matches!(c.peek(), Some(b' ' | b'\t' | b',')) {
                c.pos += 1;
            }
            let start = c.pos;
            let name = c.token();
            if name.is_empty() {
                if c.peek().is_none() {
                    break;
                }
                c.skip_element();
                continue;
            }
            c.skip_ws();
            if c.peek() != Some(b'=') {
                // A new challenge starts here.
                c.pos = start;
                break;
            }
            c.pos += 1;
            c.skip_ws();
            let value = if c.peek() == Some(b'"') {
                c.quoted()
            } else {
                let v = c.token();
                if v.is_empty() && challenge.params.is_empty() {
                    // token68 (`Negotiate abc==`): kept as a nameless value.
                    let mut t = name.to_owned();
                    t.push('=');
                    while c.peek() == Some(b'=') {
                        t.push('=');
                        c.pos += 1;
                    }
                    challenge.params.push((String::new(), t));
                    continue;
                }
                v.to_owned()
            };
            challenge.params.push((name.to_ascii_lowercase(), value));
        }
        out.push(challenge);
    }
}

/// The target of the `rel="next"` link in the `Link` values `headers`, as
/// written (relative or absolute).
pub(crate) fn next_link<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    for value in headers {
        let mut rest = value;
        while let Some(open) = rest.find('<') {
            let after = &rest[open + 1..];
            let close = after.find('>')?;
            let target = &after[..close];
            // The parameters run to the next `,` outside quotes.
            let params_start = &after[close + 1..];
            let mut end = params_start.len();
            let mut in_quotes = false;
            for (i, ch) in params_start.char_indices() {
                match ch {
                    '"' => in_quotes = !in_quotes,
                    ',' if !in_quotes => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            let params = &params_start[..end];
            let is_next = params.split(';').any(|p| {
                let Some((name, v)) = p.split_once('=') else {
                    return false;
                };
                name.trim().eq_ignore_ascii_case("rel")
                    && v.trim()
                        .trim_matches('"')
                        .split_ascii_whitespace()
                        .any(|r| r.eq_ignore_ascii_case("next"))
            });
            if is_next {
                return Some(target.trim().to_owned());
            }
            rest = &params_start[end..];
        }
    }
    None
}

/// A `Content-Range` of a 206 or 416 answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ContentRange {
    /// First and last byte (inclusive); `None` for `*` (a 416's).
    pub range: Option<(u64, u64)>,
    /// The whole resource's length; `None` for `*`.
    pub total: Option<u64>,
}

/// Parses `bytes <first>-<last>/<total>` (or `bytes */<total>`).
pub(crate) fn content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    let range = match range.trim() {
        "*" => None,
        r => {
            let (a, b) = r.split_once('-')?;
            let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if b < a {
                return None;
            }
            Some((a, b))
        }
    };
    Some(ContentRange { range, total })
}

/// The end of the `Range: 0-<end>` an upload answer reports (inclusive),
/// `None` for a malformed value. Distribution writes `0-0` both for an
/// empty upload and after one byte; callers only compare it with what they
/// sent.
pub(crate) fn upload_range_end(value: &str) -> Option<u64> {
    let v = value.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (start, end) = v.split_once('-')?;
    start.trim().parse::<u64>().ok()?;
    end.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> Vec<Challenge> {
        challenges([v])
    }

    #[test]
    fn bearer_challenge_with_quoted_commas() {
        let c = one(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c[0].param("service"), Some("registry.example.com"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
    }

    #[test]
    fn several_challenges_in_one_and_several_headers() {
        let c = one(r#"Basic realm="x, y", BEARER Realm=tok , error="insufficient_scope""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("x, y"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("tok"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));

        let c = challenges([r#"Basic realm="a""#, r#"Bearer realm="b",service="s""#]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].param("service"), Some("s"));
    }

    #[test]
    fn escapes_spaces_and_bare_schemes() {
        let c = one(r#"Bearer realm = "a\"b\\c" ,  service="s""#);
        assert_eq!(c[0].param("realm"), Some(r#"a"b\c"#));
        assert_eq!(c[0].param("service"), Some("s"));
        let c = one("Negotiate, Basic realm=r");
        assert_eq!(c.len(), 2);
        assert!(c[0].params.is_empty());
        assert_eq!(c[1].param("realm"), Some("r"));
        let c = one("Negotiate abc==, Basic realm=r");
        assert_eq!(c[0].params, vec![(String::new(), "abc==".to_owned())]);
        assert_eq!(c[1].scheme, "basic");
    }

    #[test]
    fn malformed_parts_are_skipped() {
        assert!(one("").is_empty());
        let c = one(r#"Bearer realm="unterminated"#);
        assert_eq!(c[0].param("realm"), Some("unterminated"));
        let c = one(r#"@@@, Basic realm="r""#);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "basic");
    }

    #[test]
    fn next_links() {
        assert_eq!(
            next_link([r#"</v2/_catalog?last=b&n=2>; rel="next""#]),
            Some("/v2/_catalog?last=b&n=2".into())
        );
        assert_eq!(
            next_link([
                r#"<https://r/a?x=1,2>; rel="prev", <https://r/b>; title="a, b"; rel="last next""#
            ]),
            Some("https://r/b".into())
        );
        assert_eq!(next_link([r#"</x>; rel=next"#]), Some("/x".into()));
        assert_eq!(next_link([r#"</x>; rel="prev""#]), None);
        assert_eq!(next_link(["garbage"]), None);
    }

    #[test]
    fn ranges() {
        let cr = |range, total| Some(ContentRange { range, total });
        assert_eq!(
            content_range("bytes 10-19/100"),
            cr(Some((10, 19)), Some(100))
        );
        assert_eq!(content_range("bytes */100"), cr(None, Some(100)));
        assert_eq!(content_range("bytes 0-9/*"), cr(Some((0, 9)), None));
        assert_eq!(content_range("bytes 9-0/10"), None);
        assert_eq!(content_range("items 0-1/2"), None);
        assert_eq!(upload_range_end("0-1023"), Some(1023));
        assert_eq!(upload_range_end("bytes=0-7"), Some(7));
        assert_eq!(upload_range_end("x"), None);
    }
}
