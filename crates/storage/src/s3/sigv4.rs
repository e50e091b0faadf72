//! AWS Signature Version 4 for S3, header form: the canonical request, the
//! string to sign and the derived signing key, plus the URI encoding and the
//! UTC timestamps they need. Pure functions, checked against AWS's examples.

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Payload hash that tells S3 the body is not covered by the signature: bodies
/// are streamed and hashing them twice (here and for the registry) is waste.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Access key pair, kept out of `Debug` output.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// One request as SigV4 sees it. `uri` and `query` are already encoded the
/// way they go on the wire (see [`uri_encode`]); `query` pairs are sorted
/// here. `headers` must include `host`, `x-amz-date` and
/// `x-amz-content-sha256`; every header given is signed.
pub struct Request<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
    pub payload_hash: &'a str,
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Percent-encodes as SigV4 wants: everything but `A-Za-z0-9-_.~`, and `/`
/// too unless `keep_slash` (object keys in a path keep theirs).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Query pairs encoded and sorted by key, then value, as signed.
pub fn encoded_query(query: &[(String, String)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
}

/// The canonical query string.
pub fn canonical_query(query: &[(String, String)]) -> String {
    encoded_query(query)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_request(req: &Request<'_>) -> (String, String) {
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), collapse_spaces(v)))
        .collect();
    headers.sort();
    let signed = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut canonical = format!(
        "{}\n{}\n{}\n",
        req.method,
        req.uri,
        canonical_query(req.query)
    );
    for (k, v) in &headers {
        canonical.push_str(k);
        canonical.push(':');
        canonical.push_str(v);
        canonical.push('\n');
    }
    canonical.push('\n');
    canonical.push_str(&signed);
    canonical.push('\n');
    canonical.push_str(req.payload_hash);
    (canonical, signed)
}

/// Trims a header value and folds inner runs of spaces, as SigV4 requires.
fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The `Authorization` header value for `req` at `amz_date`
/// (`YYYYMMDDTHHMMSSZ`, the same as the `x-amz-date` header).
pub fn authorization(
    creds: &Credentials,
    region: &str,
    amz_date: &str,
    req: &Request<'_>,
) -> String {
    let date = &amz_date[..amz_date.len().min(8)];
    let scope = format!("{date}/{region}/s3/aws4_request");
    let (canonical, signed) = canonical_request(req);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let key = signing_key(&creds.secret_access_key, date, region);
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed},Signature={signature}",
        creds.access_key_id
    )
}

fn signing_key(secret: &str, date: &str, region: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, b"s3");
    hmac(&k, b"aws4_request")
}

/// Seconds since the epoch, 0 if the clock is before it.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time.
pub fn amz_date(unix: u64) -> String {
    let (y, m, d) = civil_from_days((unix / 86_400) as i64);
    let s = unix % 86_400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parses the ISO 8601 UTC timestamps S3 lists carry
/// (`2013-07-13T16:42:35.000Z`) into Unix seconds.
pub fn parse_iso8601(s: &str) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
    let secs = num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
    u64::try_from(days * 86_400 + secs).ok()
}

// Howard Hinnant's algorithms: proleptic Gregorian calendar <-> day count.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of AWS's "Signature Calculations for the Authorization
    // Header" page (sig-v4-header-based-auth).
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const DATE: &str = "20130524T000000Z";

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        }
    }

    fn headers(extra: &[(&str, &str)], payload: &str) -> Vec<(String, String)> {
        let mut h = vec![
            (
                "Host".to_owned(),
                "examplebucket.s3.amazonaws.com".to_owned(),
            ),
            ("x-amz-date".to_owned(), DATE.to_owned()),
            ("x-amz-content-sha256".to_owned(), payload.to_owned()),
        ];
        h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        h
    }

    fn sign(
        method: &str,
        uri: &str,
        query: &[(&str, &str)],
        h: &[(String, String)],
        payload: &str,
    ) -> String {
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let req = Request {
            method,
            uri,
            query: &query,
            headers: h,
            payload_hash: payload,
        };
        authorization(&creds(), "us-east-1", DATE, &req)
    }

    fn expect(auth: &str, signed: &str, signature: &str) {
        assert_eq!(
            auth,
            format!(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed},Signature={signature}"
            )
        );
    }

    #[test]
    fn get_object_with_range() {
        let h = headers(&[("Range", "bytes=0-9")], EMPTY);
        let query: Vec<(String, String)> = Vec::new();
        let req = Request {
            method: "GET",
            uri: "/test.txt",
            query: &query,
            headers: &h,
            payload_hash: EMPTY,
        };
        let (canonical, _) = canonical_request(&req);
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        expect(
            &sign("GET", "/test.txt", &[], &h, EMPTY),
            "host;range;x-amz-content-sha256;x-amz-date",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        );
    }

    #[test]
    fn put_object() {
        let payload = sha256_hex(b"Welcome to Amazon S3.");
        assert_eq!(
            payload,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let h = headers(
            &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            &payload,
        );
        let uri = format!("/{}", uri_encode("test$file.text", true));
        assert_eq!(uri, "/test%24file.text");
        expect(
            &sign("PUT", &uri, &[], &h, &payload),
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
        );
    }

    #[test]
    fn get_bucket_lifecycle() {
        let h = headers(&[], EMPTY);
        expect(
            &sign("GET", "/", &[("lifecycle", "")], &h, EMPTY),
            "host;x-amz-content-sha256;x-amz-date",
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        );
    }

    #[test]
    fn list_objects_sorts_the_query() {
        let h = headers(&[], EMPTY);
        expect(
            &sign("GET", "/", &[("prefix", "J"), ("max-keys", "2")], &h, EMPTY),
            "host;x-amz-content-sha256;x-amz-date",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/ü~.-_", true), "a%20b/%C3%BC~.-_");
        assert_eq!(uri_encode("a/b+c=", false), "a%2Fb%2Bc%3D");
        let q = vec![
            ("uploadId".to_owned(), "x/y".to_owned()),
            ("partNumber".to_owned(), "2".to_owned()),
            ("uploads".to_owned(), String::new()),
        ];
        assert_eq!(canonical_query(&q), "partNumber=2&uploadId=x%2Fy&uploads=");
    }

    #[test]
    fn timestamps() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(1_369_353_600), DATE);
        // A leap day, and the end of a leap century year.
        assert_eq!(amz_date(951_782_400 + 3723), "20000229T010203Z");
        assert_eq!(amz_date(978_307_199), "20001231T235959Z");
        assert_eq!(
            parse_iso8601("2013-05-24T00:00:00.000Z"),
            Some(1_369_353_600)
        );
        assert_eq!(
            parse_iso8601("2000-02-29T01:02:03Z"),
            Some(951_782_400 + 3723)
        );
        for t in [0u64, 86_399, 1_700_000_000, 4_102_444_800] {
            let d = amz_date(t);
            let iso = format!(
                "{}-{}-{}T{}:{}:{}Z",
                &d[0..4],
                &d[4..6],
                &d[6..8],
                &d[9..11],
                &d[11..13],
                &d[13..15]
            );
            assert_eq!(parse_iso8601(&iso), Some(t), "{iso}");
        }
        assert_eq!(parse_iso8601("2013-05-24"), None);
        assert_eq!(parse_iso8601("2013-05-24T0a:00:00Z"), None);
    }
}
