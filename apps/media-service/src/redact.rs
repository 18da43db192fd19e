//! URIs as shown to people: logs, errors, `/health`, `GET /v1/streams`, artifacts.
//!
//! Input URIs may carry credentials (`rtsp://user:pass@camera/…`, `srt://…?passphrase=…`).
//! The worker opens the URI as given; everything it reports uses [`uri`], which hides the
//! user-info part and the values of query parameters that look like secrets.

/// Query parameter names (lowercase substrings) whose values are hidden.
const SECRET_PARAMS: &[&str] = &["pass", "pwd", "token", "key", "secret", "auth", "sig"];

/// Shown in place of a hidden value.
pub const HIDDEN: &str = "***";

/// `uri` with its user-info and secret-looking query values replaced by [`HIDDEN`].
/// Anything that is not `scheme://…` is returned unchanged (a local path has no secret).
pub fn uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let (scheme, rest) = uri.split_at(scheme_end + 3);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("{HIDDEN}@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        None => tail.to_string(),
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret(k) => format!("{k}={HIDDEN}"),
                    _ => pair.to_string(),
                })
                .collect();
            let mut t = format!("{path}?{}", query.join("&"));
            if let Some(f) = fragment {
                t.push('#');
                t.push_str(f);
            }
            t
        }
    };
    format!("{scheme}{authority}{tail}")
}

/// `text` with every URI in it passed through [`uri`] (error messages quote URIs, GStreamer's
/// included).
pub fn text(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The URI starts after the last separator before its scheme.
        let start = rest[..i]
            .rfind(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '(' | '<' | '[' | '='))
            .map_or(0, |j| j + 1);
        let end = rest[i..]
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | ')' | '>' | ']' | ','))
            .map_or(rest.len(), |j| i + j);
        out.push_str(&rest[..start]);
        out.push_str(&uri(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_hidden_and_the_rest_kept() {
        assert_eq!(
            uri("rtsp://admin:hunter2@cam.local:554/live/x/in"),
            "rtsp://***@cam.local:554/live/x/in"
        );
        assert_eq!(
            uri("srt://relay:9000?streamid=live/x&passphrase=hunter2hunter2"),
            "srt://relay:9000?streamid=live/x&passphrase=***"
        );
        assert_eq!(
            uri("https://cdn.example/a.m3u8?sig=abc&t=1#x"),
            "https://cdn.example/a.m3u8?sig=***&t=1#x"
        );
        // Nothing secret: unchanged.
        for plain in [
            "rtsp://127.0.0.1:8554/live/x/in",
            "/tmp/in.mp4",
            "rtmp://h:1935/live/x/out",
        ] {
            assert_eq!(uri(plain), plain);
        }
        // In running text, every URI is cleaned and the words around it kept.
        assert_eq!(
            text("cannot open 'rtsp://u:p@h/x' (Could not connect to rtsp://u:p@h/x), retrying"),
            "cannot open 'rtsp://***@h/x' (Could not connect to rtsp://***@h/x), retrying"
        );
        assert_eq!(text("no uri here"), "no uri here");
        // An '@' after the authority is not user-info.
        assert_eq!(uri("rtsp://h/p@q"), "rtsp://h/p@q");
    }
}
