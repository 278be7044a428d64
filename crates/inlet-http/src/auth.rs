//! Authentication: secrets stay opaque until a request is built here.

use std::{fmt, sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use tokio::{sync::Mutex, time::Instant};

/// How requests authenticate. Built from resolved secrets; [`fmt::Debug`] is redacted.
#[derive(Clone, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// `Authorization: Basic base64(user:password)`.
    Basic {
        /// The user name (not secret).
        username: String,
        /// The password.
        password: SecretString,
    },
    /// An API key in a header, e.g. `X-Api-Key: <key>`.
    ApiKeyHeader {
        /// Header name.
        header: String,
        /// The key.
        key: SecretString,
    },
    /// An API key in the query string, e.g. `?api_key=<key>`.
    ApiKeyQuery {
        /// Parameter name.
        param: String,
        /// The key.
        key: SecretString,
    },
    /// OAuth2 refresh-token flow: an access token obtained from the token endpoint,
    /// refreshed before it expires and after a 401.
    OAuth2(Arc<OAuth2RefreshToken>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("Auth::None"),
            Auth::Bearer(_) => f.write_str("Auth::Bearer(***)"),
            Auth::Basic { username, .. } => write!(f, "Auth::Basic({username}:***)"),
            Auth::ApiKeyHeader { header, .. } => write!(f, "Auth::ApiKeyHeader({header}: ***)"),
            Auth::ApiKeyQuery { param, .. } => write!(f, "Auth::ApiKeyQuery({param}=***)"),
            Auth::OAuth2(o) => write!(f, "Auth::OAuth2({})", o.token_url),
        }
    }
}

impl Auth {
    /// The secret values this auth holds (for redaction), and the query parameter that
    /// carries one, if any.
    pub(crate) fn secrets(&self) -> Vec<SecretString> {
        match self {
            Auth::None => vec![],
            Auth::Bearer(t) => vec![t.clone()],
            Auth::Basic { password, .. } => vec![password.clone()],
            Auth::ApiKeyHeader { key, .. } | Auth::ApiKeyQuery { key, .. } => vec![key.clone()],
            Auth::OAuth2(o) => vec![o.client_secret.clone(), o.refresh_token.clone()],
        }
    }

    pub(crate) fn query_param(&self) -> Option<&str> {
        match self {
            Auth::ApiKeyQuery { param, .. } => Some(param),
            _ => None,
        }
    }
}

/// The OAuth2 refresh-token grant (RFC 6749 section 6).
pub struct OAuth2RefreshToken {
    /// The token endpoint.
    pub token_url: String,
    /// The client id (not secret).
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// The long-lived refresh token.
    pub refresh_token: SecretString,
    /// Scopes to ask for (space-separated when sent); empty sends none.
    pub scopes: Vec<String>,
    pub(crate) current: Mutex<Option<(SecretString, Instant)>>,
}

impl fmt::Debug for OAuth2RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2RefreshToken")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl OAuth2RefreshToken {
    /// A refresh-token flow against `token_url`.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        refresh_token: SecretString,
        scopes: Vec<String>,
    ) -> Self {
        OAuth2RefreshToken {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            refresh_token,
            scopes,
            current: Mutex::new(None),
        }
    }

    /// The form of a refresh request.
    pub(crate) fn form(&self) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            (
                "refresh_token",
                self.refresh_token.expose_secret().to_string(),
            ),
            ("client_id", self.client_id.clone()),
            (
                "client_secret",
                self.client_secret.expose_secret().to_string(),
            ),
        ];
        if !self.scopes.is_empty() {
            form.push(("scope", self.scopes.join(" ")));
        }
        form
    }

    /// Remember a fresh access token valid for `expires_in` (refreshed a minute early).
    pub(crate) async fn store(&self, token: SecretString, expires_in: Option<u64>) {
        let ttl = Duration::from_secs(expires_in.unwrap_or(3600).saturating_sub(60).max(1));
        *self.current.lock().await = Some((token, Instant::now() + ttl));
    }

    /// The current access token if it is still valid.
    pub(crate) async fn valid_token(&self) -> Option<SecretString> {
        let guard = self.current.lock().await;
        guard
            .as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| t.clone())
    }

    /// Forget the access token (after a 401).
    pub(crate) async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_every_auth_is_redacted() {
        let s = || SecretString::from("sk_live_topsecret".to_string());
        let all = [
            Auth::Bearer(s()),
            Auth::Basic {
                username: "u".into(),
                password: s(),
            },
            Auth::ApiKeyHeader {
                header: "X-Api-Key".into(),
                key: s(),
            },
            Auth::ApiKeyQuery {
                param: "api_key".into(),
                key: s(),
            },
            Auth::OAuth2(Arc::new(OAuth2RefreshToken::new(
                "https://x/token",
                "id",
                s(),
                s(),
                vec![],
            ))),
        ];
        for a in all {
            let text = format!("{a:?}");
            assert!(!text.contains("topsecret"), "{text}");
        }
    }
}
