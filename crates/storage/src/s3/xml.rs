//! Just enough XML for S3: the inner text of named elements in the small,
//! flat documents S3 answers with, and escaping for the few bodies we send.
//! No namespaces, attributes or CDATA are needed there.

/// The inner text of every `<tag>…</tag>` in `xml`, in order, not unescaped.
/// Matches the exact name only: `<Key>` is not `<KeyMarker>`.
pub fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find(&open) {
        let after = &rest[at + open.len()..];
        let Some(gt) = after.find('>') else { break };
        let head = &after[..gt];
        // `<tag>`, `<tag/>` or `<tag attr="…">`, not a longer name sharing
        // the prefix.
        if !(head.is_empty() || head == "/" || head.starts_with(char::is_whitespace)) {
            rest = after;
            continue;
        }
        if head.ends_with('/') {
            out.push("");
            rest = &after[gt + 1..];
            continue;
        }
        let body = &after[gt + 1..];
        let Some(end) = body.find(&close) else { break };
        out.push(&body[..end]);
        rest = &body[end + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>` in `xml`.
pub fn first(xml: &str, tag: &str) -> Option<String> {
    elements(xml, tag).first().map(|s| unescape(s))
}

pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(semi) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exact_elements() {
        let xml = r#"<?xml version="1.0"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <KeyMarker></KeyMarker><NextKeyMarker>b</NextKeyMarker>
  <Upload><Key>a&amp;b</Key><UploadId>u1</UploadId><Initiated>2013-05-24T00:00:00.000Z</Initiated></Upload>
  <Upload><Key>c</Key><UploadId>u2</UploadId></Upload>
  <IsTruncated>false</IsTruncated><Prefix/>
</ListMultipartUploadsResult>"#;
        let uploads = elements(xml, "Upload");
        assert_eq!(uploads.len(), 2);
        assert_eq!(first(uploads[0], "Key").as_deref(), Some("a&b"));
        assert_eq!(first(uploads[1], "UploadId").as_deref(), Some("u2"));
        assert_eq!(first(xml, "NextKeyMarker").as_deref(), Some("b"));
        assert_eq!(first(xml, "KeyMarker").as_deref(), Some(""));
        assert_eq!(first(xml, "Prefix").as_deref(), Some(""));
        assert_eq!(first(xml, "IsTruncated").as_deref(), Some("false"));
        assert_eq!(first(xml, "Missing"), None);
        let root = elements(xml, "ListMultipartUploadsResult");
        assert_eq!(root.len(), 1);
    }

    #[test]
    fn entities_round_trip() {
        assert_eq!(unescape("&quot;abc&quot;"), "\"abc\"");
        assert_eq!(unescape("a&#38;b&#x3C;c &bogus; d&"), "a&b<c &bogus; d&");
        let s = "k<&>\"'y";
        assert_eq!(unescape(&escape(s)), s);
    }
}
