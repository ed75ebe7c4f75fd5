//! Where a request goes: its path normalized before any route sees it, and the
//! upstream URI built from the route and that path.
//!
//! Normalization is RFC 3986 §5.2.4 (`.` and `..` segments removed) after the
//! encodings that back ends decode on their own are decoded (`%2e` → `.`, `%2f` →
//! `/`), with duplicate slashes collapsed and a `..;param` segment read as `..`
//! (servlet containers do). A path that climbs above the root is refused, so a
//! route's prefix can only match what lies below it, and the upstream receives
//! exactly the path that was matched.

use http::Uri;

use super::fault::Fault;
use crate::state::Route;

/// The normalized absolute path, or `None` when it climbs above the root.
pub(super) fn normalize_path(raw: &str) -> Option<String> {
    let decoded = decode_separators(raw);
    let mut segments: Vec<&str> = Vec::new();
    let ends_open = decoded.ends_with('/');
    for segment in decoded.split('/') {
        // `..;jsessionid=x` is `..` to a servlet container: treat it as one here.
        let name = segment.split(';').next().unwrap_or("");
        match name {
            "" | "." => {}
            ".." => {
                segments.pop()?;
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || ends_open || decoded_ends_with_dot_segment(&decoded) {
        out.push('/');
    }
    Some(out)
}

/// `/a/..` and `/a/.` name a directory: RFC 3986 keeps the trailing slash.
fn decoded_ends_with_dot_segment(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    matches!(last.split(';').next(), Some("." | ".."))
}

/// `%2e`/`%2E` → `.`, `%2f`/`%2F` → `/`, `\` → `/`; everything else as sent.
fn decode_separators(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            match (bytes[i + 1], bytes[i + 2].to_ascii_lowercase()) {
                (b'2', b'e') => {
                    out.push('.');
                    i += 3;
                    continue;
                }
                (b'2', b'f') => {
                    out.push('/');
                    i += 3;
                    continue;
                }
                (b'5', b'c') => {
                    out.push('/');
                    i += 3;
                    continue;
                }
                _ => {}
            }
        }
        if bytes[i] == b'\\' {
            out.push('/');
        } else {
            // Path bytes are ASCII (hyper accepts no other), so this is a char.
            out.push(bytes[i] as char);
        }
        i += 1;
    }
    out
}

/// The upstream URL: the route's upstream with the rest of the (normalized)
/// path and the query.
pub(super) fn upstream_uri(route: &Route, path: &str, query: Option<&str>) -> Result<Uri, Fault> {
    let base = &route.config.upstream;
    let rest = path
        .strip_prefix(route.config.path.trim_end_matches('/'))
        .unwrap_or("");
    let mut target = base.path().trim_end_matches('/').to_string();
    target.push_str(rest);
    if target.is_empty() {
        target.push('/');
    }
    if let Some(q) = query {
        target.push('?');
        target.push_str(q);
    }
    Uri::builder()
        .scheme(base.scheme_str().unwrap_or("http"))
        .authority(base.authority().map(|a| a.as_str()).unwrap_or(""))
        .path_and_query(target)
        .build()
        .map_err(|e| Fault::Internal(format!("upstream URI for route {}: {e}", route.config.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_encodings_and_duplicate_slashes() {
        let cases = [
            ("/orders", Some("/orders")),
            ("/orders/", Some("/orders/")),
            ("/", Some("/")),
            ("/orders/public/../secret", Some("/orders/secret")),
            ("/orders/public/../../secret", Some("/secret")),
            ("/orders/./x", Some("/orders/x")),
            ("//orders///x", Some("/orders/x")),
            ("/orders/public/%2e%2e/secret", Some("/orders/secret")),
            ("/orders/public/%2E%2E/secret", Some("/orders/secret")),
            ("/orders/public/..%2fsecret", Some("/orders/secret")),
            ("/orders/public/..;x=1/secret", Some("/orders/secret")),
            ("/orders/public\\..\\secret", Some("/orders/secret")),
            ("/orders/a/..", Some("/orders/")),
            ("/orders/%41", Some("/orders/%41")),
            ("/orders/x%2", Some("/orders/x%2")),
            ("/..", None),
            ("/orders/../../x", None),
            ("/%2e%2e/x", None),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw).as_deref(), want, "{raw}");
        }
    }
}
