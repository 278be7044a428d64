//! Redaction: every secret the client knows, and credential-like query parameters, out of
//! URLs, texts and errors before they reach a log or an error message.

use secrecy::{ExposeSecret, SecretString};
use url::Url;

/// The error and its causes, without the URL reqwest puts in its message (it may carry
/// a query-string key).
pub(super) fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = vec![e.without_url_ref().to_string()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(u) => text
                .replace(&format!(" ({u})"), "")
                .replace(u.as_str(), "<url>"),
            None => text,
        }
    }
}
/// Query parameters whose values are credentials whatever the auth.
const SENSITIVE_PARAMS: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "client_secret",
    "key",
    "password",
    "refresh_token",
    "secret",
    "sig",
    "signature",
    "token",
];

/// Replaces secrets in text and URLs.
pub(super) struct Redactor {
    pub(super) secrets: Vec<SecretString>,
    pub(super) param: Option<String>,
}

impl Redactor {
    pub(super) fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            let s = s.expose_secret();
            // Very short values would redact ordinary words; they are weak secrets anyway.
            if s.len() >= 4 && out.contains(s) {
                out = out.replace(s, "***");
            }
        }
        out
    }

    pub(super) fn url(&self, url: &Url) -> String {
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        if shown.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let hide = SENSITIVE_PARAMS.contains(&lower.as_str())
                        || self.param.as_deref() == Some(k.as_ref());
                    (
                        k.into_owned(),
                        if hide { "***".into() } else { v.into_owned() },
                    )
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        self.text(shown.as_str())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_text_are_redacted() {
        let r = Redactor {
            secrets: vec![SecretString::from("ghp_supersecret".to_string())],
            param: Some("apiKey".into()),
        };
        let u = Url::parse("https://h/x?page=2&apiKey=abc123&access_token=zzz&q=ghp_supersecret")
            .unwrap();
        let shown = r.url(&u);
        assert!(!shown.contains("abc123"), "{shown}");
        assert!(!shown.contains("zzz"), "{shown}");
        assert!(!shown.contains("ghp_supersecret"), "{shown}");
        assert!(shown.contains("page=2"), "{shown}");
        assert_eq!(r.text("token ghp_supersecret refused"), "token *** refused");
    }
}
