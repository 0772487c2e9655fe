//! Response headers as received, looked up case-insensitively.
//!
//! Tests assert on exact header values (ETag, Content-Range, the rate-limit
//! set), so the client keeps every header, in order, rather than a few
//! pre-parsed fields.

/// The headers of a response: lower-cased names, values as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Builds a header list; names are lower-cased.
    #[must_use]
    pub fn new<N: AsRef<str>, V: Into<String>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(n, v)| (n.as_ref().to_ascii_lowercase(), v.into()))
                .collect(),
        )
    }

    /// The first value of `name` (any case), if present.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (any case), in order.
    #[must_use]
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether `name` (any case) is present.
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All `(name, value)` pairs, names lower-cased.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of header lines.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Headers;

    #[test]
    fn lookup_ignores_case_and_keeps_order() {
        let h = Headers::new([("ETag", "\"a\""), ("X-Meta-A", "1"), ("x-meta-a", "2")]);
        assert_eq!(h.get("etag"), Some("\"a\""));
        assert_eq!(h.get("ETAG"), Some("\"a\""));
        assert_eq!(h.get_all("X-META-A"), vec!["1", "2"]);
        assert!(!h.contains("location"));
        assert_eq!(h.iter().next(), Some(("etag", "\"a\"")));
        assert_eq!(h.len(), 3);
    }
}
