//! Pagination: the URL of a page of an endpoint, and the token of the page after it.

use inlet_core::SourceError;
use serde_json::Value;
use url::Url;

use super::{
    Reader, Vars,
    records::{Page, body_value, value_text},
};
use crate::{
    manifest::{Pagination, StreamDef},
    state::{Cursor, PageToken},
};

impl Reader {
    /// The URL of `token` for endpoint `def`.
    pub(super) fn page_url(
        &self,
        def: &StreamDef,
        vars: &Vars,
        lower: Option<&Value>,
        token: &PageToken,
    ) -> Result<Url, SourceError> {
        if let PageToken::Url(u) = token {
            return Url::parse(u)
                .or_else(|_| self.inner.base_url.join(u))
                .map_err(|e| SourceError::data(&self.stream, format!("next page URL {u:?}: {e}")));
        }
        let path = self.render(&def.path, vars)?;
        let base = self.inner.base_url.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{path}")).map_err(|e| {
            SourceError::config(
                format!("streams.{}.path", self.stream),
                format!("{base}{path}: {e}"),
            )
        })?;
        let mut pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (k, v) in &def.params {
            pairs.push((k.clone(), self.render(v, vars)?));
        }
        if let (Some(lower), Some(inc)) = (lower, &self.def.incremental) {
            let ty = self.cursor_type();
            if let Some(c) = Cursor::from_json(lower, ty.as_ref()) {
                pairs.push((inc.request_param.clone(), c.param(inc.format)));
            }
        }
        let mut set = |k: &str, v: String| {
            pairs.retain(|(name, _)| name != k);
            pairs.push((k.to_string(), v));
        };
        match (self.inner.manifest.pagination_of(def), token) {
            (Pagination::Cursor { param, .. }, PageToken::Cursor(c)) => set(param, c.clone()),
            (
                Pagination::Offset {
                    offset_param,
                    limit_param,
                    limit,
                },
                t,
            ) => {
                let offset = if let PageToken::Offset(o) = t { *o } else { 0 };
                set(offset_param, offset.to_string());
                set(limit_param, limit.to_string());
            }
            (
                Pagination::PageNumber {
                    param,
                    start,
                    size_param,
                    size,
                },
                t,
            ) => {
                let page = if let PageToken::Page(p) = t {
                    *p
                } else {
                    *start
                };
                set(param, page.to_string());
                if let Some(sp) = size_param {
                    set(sp, size.to_string());
                }
            }
            _ => {}
        }
        url.set_query(None);
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }

    /// A next-page URL as stored in state: resolved against the base URL, without an
    /// API key a server may have echoed into it.
    pub(super) fn scrub(&self, token: PageToken) -> PageToken {
        match token {
            PageToken::Url(u) => match Url::parse(&u).or_else(|_| self.inner.base_url.join(&u)) {
                Ok(url) => PageToken::Url(self.inner.client.without_credentials(&url).to_string()),
                Err(_) => PageToken::Url(u),
            },
            other => other,
        }
    }
}

/// The next page after `page`, or `None` at the end.
pub(super) fn next_token(
    pagination: &Pagination,
    page: &Page,
    n: usize,
    current: &PageToken,
    last_field: impl Fn(&str) -> Option<String>,
) -> Result<Option<PageToken>, SourceError> {
    let body = &page.response.body[..];
    Ok(match pagination {
        Pagination::None => None,
        // Every Link field, parsed as RFC 8288 says; a relative target is relative to
        // the page's own URL (a server answering `<?page=3>` means this endpoint).
        Pagination::LinkHeader => match inlet_http::link::find(&page.response.headers, "next") {
            None => None,
            Some(link) => {
                let next = link.resolve(&page.response.url).map_err(|e| {
                    SourceError::data(
                        format!("page at {}", page.response.url),
                        format!(
                            "the Link header's rel=\"next\" target {:?} is not a URL: {e}",
                            link.target
                        ),
                    )
                })?;
                Some(PageToken::Url(next.to_string()))
            }
        },
        Pagination::NextUrl { path } => body_value(body, path)
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
            .map(PageToken::Url),
        Pagination::Cursor {
            record_field,
            body_path,
            has_more,
            ..
        } => {
            if let Some(h) = has_more
                && body_value(body, h) != Some(Value::Bool(true))
            {
                return Ok(None);
            }
            let value = match (record_field, body_path) {
                (Some(f), _) => {
                    if n == 0 {
                        None
                    } else {
                        last_field(f)
                    }
                }
                (None, Some(path)) => body_value(body, path).and_then(|v| value_text(&v)),
                (None, None) => None,
            };
            let value = value.filter(|v| !v.is_empty());
            if value.is_none() && has_more.is_some() {
                // The API says there is more but the page does not say where: stopping
                // here would silently drop the rest.
                return Err(SourceError::data(
                    format!("page at {}", page.response.url),
                    format!(
                        "`{}` says more pages follow, but the page has no cursor ({}); the API may have renamed it: check `pagination` in the manifest",
                        has_more.as_deref().unwrap_or_default(),
                        match (record_field, body_path) {
                            (Some(f), _) => format!("record field `{f}` of the last record"),
                            (None, Some(p)) => format!("body field `{p}`"),
                            _ => String::new(),
                        }
                    ),
                ));
            }
            value.map(PageToken::Cursor)
        }
        Pagination::Offset { limit, .. } => {
            let offset = if let PageToken::Offset(o) = current {
                *o
            } else {
                0
            };
            ((n as u64) >= *limit).then(|| PageToken::Offset(offset + n as u64))
        }
        Pagination::PageNumber { start, size, .. } => {
            let number = if let PageToken::Page(p) = current {
                *p
            } else {
                *start
            };
            (n > 0 && (n as u64) >= *size).then_some(PageToken::Page(number + 1))
        }
    })
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use inlet_http::Response;

    #[test]
    fn has_more_without_a_cursor_is_an_error_not_the_end() {
        let page = Page {
            response: Response {
                status: 200,
                headers: Default::default(),
                body: bytes_of(r#"{"has_more":true,"data":[{"customer_id":"cus_1"}]}"#),
                url: Url::parse("http://h/v1/customers").unwrap(),
                attempts: 1,
            },
            records: 0..0,
            batch: None,
            hash: 0,
        };
        let cursor = Pagination::Cursor {
            param: "starting_after".into(),
            record_field: Some("id".into()),
            body_path: None,
            has_more: Some("has_more".into()),
        };
        let err = next_token(&cursor, &page, 1, &PageToken::Start, |_| None).unwrap_err();
        assert!(err.to_string().contains("record field `id`"), "{err}");
        let next = next_token(&cursor, &page, 1, &PageToken::Start, |_| {
            Some("cus_1".into())
        })
        .unwrap();
        assert_eq!(next, Some(PageToken::Cursor("cus_1".into())));
    }

    fn bytes_of(s: &str) -> bytes::Bytes {
        bytes::Bytes::from(s.to_string())
    }

    #[test]
    fn link_header_next_is_resolved_against_the_page_url_across_fields() {
        let mut page = Page {
            response: Response {
                status: 200,
                headers: Default::default(),
                body: bytes_of("[]"),
                url: Url::parse(
                    "https://api.github.com/repositories/1300192/issues?labels=bug,help&page=3",
                )
                .unwrap(),
                attempts: 1,
            },
            records: 0..0,
            batch: None,
            hash: 0,
        };
        // Two Link fields; the second has a relative target with commas, and `REL`.
        let headers = &mut page.response.headers;
        headers.append(
            "link",
            r#"<https://api.github.com/repositories/1300192/issues?page=2>; rel="prev""#
                .parse()
                .unwrap(),
        );
        headers.append(
            "link",
            r#"<?labels=bug,help&page=4>; REL="Next", <?page=515>; rel="last""#
                .parse()
                .unwrap(),
        );
        let next = next_token(&Pagination::LinkHeader, &page, 1, &PageToken::Start, |_| {
            None
        })
        .unwrap();
        assert_eq!(
            next,
            Some(PageToken::Url(
                "https://api.github.com/repositories/1300192/issues?labels=bug,help&page=4".into()
            ))
        );
    }
}
