//! The `Link` header field (RFC 8288, Web Linking).
//!
//! Parsed the way the RFC's Appendix B says a lenient parser should, over every `Link`
//! field of a response (a server may send several, and may fold them into one):
//!
//! ```text
//! Link       = #link-value
//! link-value = "<" URI-Reference ">" *( OWS ";" OWS link-param )
//! link-param = token BWS [ "=" BWS ( token / quoted-string ) ]
//! ```
//!
//! - a comma ends a link only outside `<...>` and outside quoted strings, so a target such
//!   as `<...?fields=a,b&labels=bug,help>` stays whole;
//! - quoted strings keep `\"`-escaped quotes, commas and semicolons;
//! - parameter names are case-insensitive, and so are relation types (they are
//!   lowercased, as Appendix B.2 does); only the first `rel` of a link counts (3.3), and
//!   it may hold several space-separated types (`rel="next last"`);
//! - `name*` parameters are RFC 8187 extended values (`title*=UTF-8'de'n%c3%a4chstes`),
//!   decoded and stored under `name`, replacing a plain `name`;
//! - the target is a URI-reference: [`Link::resolve`] resolves it (RFC 3986 section 5.2)
//!   against the URL of the request that got the response, never a configured base URL.
//!
//! Malformed input never fails: like the RFC's algorithm, parsing stops at the first
//! link-value that does not start with `<`, keeping the links before it.

use reqwest::header::HeaderMap;
use url::Url;

/// Whitespace between the parts of a link. CR and LF are not in a field value on the wire
/// (parsers unfold lines), but the RFC's examples are written folded, and so are some
/// values copied from documentation.
const WS: [char; 4] = [' ', '\t', '\r', '\n'];

/// One link of a `Link` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The target as written between `<` and `>` (a URI-reference, maybe relative).
    pub target: String,
    /// Relation types, lowercased, in the order written (empty without `rel`).
    pub rel: Vec<String>,
    /// The `anchor` parameter (the link's context, when it is not the response itself).
    pub anchor: Option<String>,
    /// The other parameters (`title`, `type`, `hreflang`...): names lowercased, `name*`
    /// values decoded and stored under `name`.
    pub params: Vec<(String, String)>,
}

impl Link {
    /// Whether the link has relation type `rel` (compared case-insensitively).
    pub fn has_rel(&self, rel: &str) -> bool {
        self.rel.iter().any(|r| r.eq_ignore_ascii_case(rel))
    }

    /// The first value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target resolved against `base`, the URL of the request whose response carried
    /// the header (RFC 8288 section 3.2, RFC 3986 section 5.2).
    pub fn resolve(&self, base: &Url) -> Result<Url, url::ParseError> {
        base.join(&self.target)
    }
}

/// The links of every `Link` field of `headers`, in order.
pub fn links(headers: &HeaderMap) -> Vec<Link> {
    parse_fields(
        headers
            .get_all(reqwest::header::LINK)
            .iter()
            // Field values are bytes; obs-text (non-ASCII) may appear in quoted titles.
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    )
}

/// The first link of `headers` with relation type `rel` about the response itself (no
/// `anchor` naming another resource).
pub fn find(headers: &HeaderMap, rel: &str) -> Option<Link> {
    links(headers)
        .into_iter()
        .find(|l| l.has_rel(rel) && l.anchor.is_none())
}

/// The links of several `Link` field values, in order (RFC 8288 Appendix B.1).
pub fn parse_fields<S: AsRef<str>>(fields: impl IntoIterator<Item = S>) -> Vec<Link> {
    let mut out = Vec::new();
    for field in fields {
        out.extend(parse(field.as_ref()));
    }
    out
}

/// The links of one `Link` field value (RFC 8288 Appendix B.2).
pub fn parse(field: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut rest = field;
    loop {
        // Empty list elements (`, ,`) are allowed by the `#` rule (RFC 9110 5.6.1).
        rest = rest.trim_start_matches(|c| c == ',' || WS.contains(&c));
        if rest.is_empty() {
            return links;
        }
        let Some(after_lt) = rest.strip_prefix('<') else {
            return links;
        };
        let Some(end) = after_lt.find('>') else {
            return links;
        };
        let target = after_lt[..end].trim().to_string();
        rest = &after_lt[end + 1..];
        let (params, after) = parse_params(rest);
        rest = after;
        links.push(link_of(target, params));
    }
}

/// Appendix B.2 steps 9-16: `rel` (first only), `anchor`, and the target attributes.
fn link_of(target: String, params: Vec<(String, String)>) -> Link {
    let rel = params
        .iter()
        .find(|(n, _)| n == "rel")
        .map(|(_, v)| {
            v.split(WS)
                .filter(|r| !r.is_empty())
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    let anchor = params
        .iter()
        .find(|(n, _)| n == "anchor")
        .map(|(_, v)| v.clone());
    let mut attributes: Vec<(String, String)> = Vec::new();
    for (name, value) in params {
        if name == "rel" || name == "anchor" || name == "rev" {
            continue;
        }
        // These may appear once; later occurrences are ignored (3.4.1).
        if matches!(name.as_str(), "media" | "title" | "title*" | "type")
            && attributes.iter().any(|(n, _)| *n == name)
        {
            continue;
        }
        attributes.push((name, value));
    }
    // An internationalised `name*` replaces a plain `name` (3.4.1, Appendix B.2 16).
    let starred: Vec<String> = attributes
        .iter()
        .filter(|(n, _)| n.ends_with('*'))
        .map(|(n, _)| n.clone())
        .collect();
    for star in starred {
        let base = star.trim_end_matches('*').to_string();
        attributes.retain(|(n, _)| *n != base);
        let mut decoded = Vec::new();
        for (n, v) in attributes.drain(..) {
            if n == star {
                // An undecodable value is dropped, as B.3 7.5 allows.
                if let Some(text) = decode_ext_value(&v) {
                    decoded.push((base.clone(), text));
                }
            } else {
                decoded.push((n, v));
            }
        }
        attributes = decoded;
    }
    Link {
        target,
        rel,
        anchor,
        params: attributes,
    }
}

/// Appendix B.3: parameters after a target, up to and including the `,` that ends the
/// link-value. Returns them and the rest of the input.
fn parse_params(mut input: &str) -> (Vec<(String, String)>, &str) {
    let mut params = Vec::new();
    loop {
        input = input.trim_start_matches(WS);
        let Some(after) = input.strip_prefix(';') else {
            return (params, input);
        };
        input = after.trim_start_matches(WS);
        let name_end = input
            .find(|c| matches!(c, '=' | ';' | ',') || WS.contains(&c))
            .unwrap_or(input.len());
        let name = input[..name_end].to_ascii_lowercase();
        input = input[name_end..].trim_start_matches(WS);
        let value = if let Some(after) = input.strip_prefix('=') {
            input = after.trim_start_matches(WS);
            if input.starts_with('"') {
                let (value, after) = parse_quoted(input);
                input = after;
                value
            } else {
                let end = input.find([';', ',']).unwrap_or(input.len());
                let value = input[..end].trim_end_matches(WS).to_string();
                input = &input[end..];
                value
            }
        } else {
            String::new()
        };
        if !name.is_empty() {
            params.push((name, value));
        }
        input = input.trim_start_matches(WS);
        if let Some(after) = input.strip_prefix(',') {
            return (params, after);
        }
        if input.is_empty() {
            return (params, input);
        }
    }
}

/// Appendix B.4: a quoted string starting at `input` (which starts with `"`), with
/// `\`-escapes undone. An unterminated string runs to the end of the input.
fn parse_quoted(input: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = input.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => return (out, ""),
            },
            '"' => return (out, &input[i + 1..]),
            c => out.push(c),
        }
    }
    (out, "")
}

/// An RFC 8187 ext-value: `charset'[language]'pct-encoded`. UTF-8 and ISO-8859-1 are
/// understood (8187 section 3.2.1 requires UTF-8 and allows ISO-8859-1).
fn decode_ext_value(value: &str) -> Option<String> {
    let mut parts = value.splitn(3, '\'');
    let charset = parts.next()?;
    let _language = parts.next()?;
    let encoded = parts.next()?;
    let bytes = percent_decode(encoded)?;
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.into_iter().map(char::from).collect())
    } else {
        None
    }
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn one(field: &str) -> Link {
        let mut links = parse(field);
        assert_eq!(links.len(), 1, "{field}: {links:?}");
        links.remove(0)
    }

    // RFC 8288 section 3.5, each example in turn.
    #[test]
    fn rfc_8288_examples() {
        let l = one(
            "<http://example.com/TheBook/chapter2>; rel=\"previous\";\r\n         title=\"previous chapter\"",
        );
        assert_eq!(l.target, "http://example.com/TheBook/chapter2");
        assert_eq!(l.rel, ["previous"]);
        assert_eq!(l.param("title"), Some("previous chapter"));

        let l = one("</>; rel=\"http://example.net/foo\"");
        assert_eq!(l.target, "/");
        assert_eq!(l.rel, ["http://example.net/foo"]);
        let base = Url::parse("http://example.com/TheBook/chapter3").unwrap();
        assert_eq!(l.resolve(&base).unwrap().as_str(), "http://example.com/");

        let l = one("</terms>; rel=\"copyright\"; anchor=\"#foo\"");
        assert_eq!(l.rel, ["copyright"]);
        assert_eq!(l.anchor.as_deref(), Some("#foo"));
        assert!(l.params.is_empty(), "{l:?}");

        let links = parse(
            "</TheBook/chapter2>;\r\n         rel=\"previous\"; title*=UTF-8'de'letztes%20Kapitel,\r\n         </TheBook/chapter4>;\r\n         rel=\"next\"; title*=UTF-8'de'n%c3%a4chstes%20Kapitel",
        );
        assert_eq!(links.len(), 2, "{links:?}");
        assert_eq!(links[0].target, "/TheBook/chapter2");
        assert_eq!(links[0].rel, ["previous"]);
        assert_eq!(links[0].param("title"), Some("letztes Kapitel"));
        assert_eq!(links[1].target, "/TheBook/chapter4");
        assert!(links[1].has_rel("next"));
        assert_eq!(links[1].param("title"), Some("nächstes Kapitel"));
        assert_eq!(
            links[1].resolve(&base).unwrap().as_str(),
            "http://example.com/TheBook/chapter4"
        );

        let l = one(
            "<http://example.org/>;\r\n             rel=\"start http://example.net/relation/other\"",
        );
        assert_eq!(l.rel, ["start", "http://example.net/relation/other"]);
        assert!(l.has_rel("start"));

        let links = parse(
            "<https://example.org/>; rel=\"start\",\r\n      <https://example.org/index>; rel=\"index\"",
        );
        assert_eq!(links.len(), 2);
        assert_eq!(links[1].target, "https://example.org/index");
        assert!(links[1].has_rel("index"));
    }

    // What api.github.com sends: one field, absolute targets, rel quoted.
    #[test]
    fn github_link_headers() {
        let h = r#"<https://api.github.com/repositories/1300192/issues?page=2>; rel="prev", <https://api.github.com/repositories/1300192/issues?page=4>; rel="next", <https://api.github.com/repositories/1300192/issues?page=515>; rel="last", <https://api.github.com/repositories/1300192/issues?page=1>; rel="first""#;
        let links = parse(h);
        assert_eq!(
            links.iter().map(|l| l.rel[0].as_str()).collect::<Vec<_>>(),
            ["prev", "next", "last", "first"]
        );
        assert_eq!(
            links[1].target,
            "https://api.github.com/repositories/1300192/issues?page=4"
        );
        // Label filters and sparse field sets put commas in the targets.
        let h = r#"<https://api.github.com/repos/octo/hello/issues?labels=bug,help%20wanted&state=all&page=2>; rel="next", <https://api.github.com/repos/octo/hello/issues?labels=bug,help%20wanted&state=all&page=9>; rel="last""#;
        let links = parse(h);
        assert_eq!(links.len(), 2, "{links:?}");
        assert_eq!(
            links[0].target,
            "https://api.github.com/repos/octo/hello/issues?labels=bug,help%20wanted&state=all&page=2"
        );
        // The search API's cursor pagination: opaque tokens with `=` and `,`.
        let h = r#"<https://api.github.com/search/code?q=addClass+user%3Amozilla&after=Y3Vyc29yOnYyOpK5MjAyMy0wMS0wMVQwMDowMDowMCswMDowMM4A,x==>; rel="next""#;
        assert!(
            one(h)
                .target
                .ends_with("after=Y3Vyc29yOnYyOpK5MjAyMy0wMS0wMVQwMDowMDowMCswMDowMM4A,x==")
        );
    }

    #[test]
    fn rel_is_case_insensitive_unquoted_multi_valued_and_first_only() {
        assert!(one("<a>; REL=NEXT").has_rel("next"));
        assert!(one("<a>; Rel=\"Next\"").has_rel("next"));
        let l = one("<a>; rel=\"prev  next\"; rel=\"last\"");
        assert_eq!(l.rel, ["prev", "next"], "only the first rel counts");
        assert!(!one("<a>; title=\"next\"").has_rel("next"));
        assert!(!one("<a>; rel=\"nextpage\"").has_rel("next"));
    }

    #[test]
    fn quoted_strings_keep_escaped_quotes_commas_and_semicolons() {
        let links = parse(
            r#"<a>; title="say \"hi\", then; leave"; rel=next, <b>; rel="prev"; title="x\\y""#,
        );
        assert_eq!(links.len(), 2, "{links:?}");
        assert_eq!(links[0].param("title"), Some(r#"say "hi", then; leave"#));
        assert!(links[0].has_rel("next"));
        assert_eq!(links[1].target, "b");
        assert_eq!(links[1].param("title"), Some(r"x\y"));
    }

    #[test]
    fn several_fields_and_empty_elements_combine() {
        let links = parse_fields([
            "<https://h/a?page=1>; rel=\"first\"",
            " , <https://h/a?page=3>; rel=\"next\",, <https://h/a>",
        ]);
        assert_eq!(links.len(), 3, "{links:?}");
        assert!(links[1].has_rel("next"));
        assert!(links[2].rel.is_empty());
        let mut headers = HeaderMap::new();
        headers.append("link", "<?page=1>; rel=\"prev\"".parse().unwrap());
        headers.append(
            "Link",
            "<?page=3&fields=a,b>; rel=\"next\"".parse().unwrap(),
        );
        let next = find(&headers, "next").unwrap();
        let request = Url::parse("https://api.example/v2/items?page=2&fields=a,b").unwrap();
        assert_eq!(
            next.resolve(&request).unwrap().as_str(),
            "https://api.example/v2/items?page=3&fields=a,b"
        );
        // Relative references resolve against the request URL (RFC 3986 5.4).
        let base = Url::parse("http://a/b/c/d;p?q").unwrap();
        for (r, want) in [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g?y", "http://a/b/c/g?y"),
            ("?y", "http://a/b/c/d;p?y"),
            ("../g", "http://a/b/g"),
            ("//g", "http://g/"),
            ("/g", "http://a/g"),
        ] {
            let l = one(&format!("<{r}>; rel=next"));
            assert_eq!(l.resolve(&base).unwrap().as_str(), want, "{r}");
        }
    }

    #[test]
    fn anchored_links_are_not_the_responses_own() {
        let mut headers = HeaderMap::new();
        headers.append(
            "link",
            "</other?page=2>; rel=next; anchor=\"/other\", </mine?page=2>; rel=next"
                .parse()
                .unwrap(),
        );
        assert_eq!(find(&headers, "next").unwrap().target, "/mine?page=2");
    }

    #[test]
    fn malformed_input_keeps_the_links_before_it() {
        assert!(parse("").is_empty());
        assert!(parse("garbage").is_empty());
        let links = parse("<a>; rel=next, junk, <b>; rel=prev");
        assert_eq!(links.len(), 1);
        assert!(parse("<unterminated; rel=next").is_empty());
        // An undecodable extended value is dropped, the link kept.
        let l = one("<a>; rel=next; title*=KOI8-R''%c1");
        assert!(l.param("title").is_none() && l.has_rel("next"));
        let l = one("<a>; rel=next; title=\"unterminated");
        assert_eq!(l.param("title"), Some("unterminated"));
    }
}
